// Data parallel training for one model: a torch.distributed (c10d) process group of WORLD_SIZE
// processes that start identical and average their gradients every step. Rendezvous comes from
// the standard environment (torchrun, srun); Gloo on CPU, NCCL where LibTorch has it.
// It does not shard the model or the optimizer: every rank holds the whole model.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <string>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <vector>

namespace btx {

struct DistributedContext {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;    // rank on this machine (LOCAL_RANK / SLURM_LOCALID), for picking a GPU
  std::string backend;   // "gloo" or "nccl"; empty when disabled
  std::string endpoint;  // MASTER_ADDR:MASTER_PORT
  c10::intrusive_ptr<c10d::ProcessGroup> pg;

  bool enabled() const { return world_size > 1; }
  bool is_main() const { return rank == 0; }  // the rank that logs and writes files

  // Collectives, no-ops when disabled; every rank must call them in the same order.
  void barrier() const;
  // Replaces every rank's tensors by rank 0's (e.g. the parameters at the start).
  void broadcast(const std::vector<torch::Tensor>& tensors) const;
  // Mean over ranks of one number per rank (e.g. the loss, for logging).
  double mean(double value) const;
  // Sum over ranks of one integer per rank.
  int64_t sum(int64_t value) const;
};

// Environment read (the first that is set wins):
//   WORLD_SIZE, else SLURM_NTASKS inside an srun step (SLURM_STEP_NUM_TASKS set); absent or 1: one
//   process, the disabled context.
//   RANK, else SLURM_PROCID.   LOCAL_RANK, else SLURM_LOCALID (default 0).
//   MASTER_ADDR, MASTER_PORT: rank 0 serves the rendezvous store there, the others connect.
//   GLOO_SOCKET_IFNAME: network interface for Gloo (default: loopback when MASTER_ADDR is
//   local, else the interface of this machine's hostname).
//   TORCHELASTIC_USE_AGENT_STORE=True (set by torchrun): the store at MASTER_PORT is torchrun's.
//   BTX_DIST_BACKEND: gloo (default) or nccl (needs a LibTorch built with NCCL and the model on
//   CUDA).
// Every rank checks that all ranks agree on WORLD_SIZE and that no RANK is taken twice. Errors
// (a missing or malformed variable, a rendezvous that cannot be reached or a rank that does not
// join within `timeout`, a WORLD_SIZE mismatch) are btx::Error naming the variable or endpoint;
// nothing is written anywhere. `op_timeout` bounds each later collective (a rank that died).
DistributedContext init_distributed_from_env(
    std::chrono::milliseconds timeout,
    std::chrono::milliseconds op_timeout = std::chrono::minutes(30));

// The process-wide context, made by init_distributed_from_env() on the first call with the
// timeout from BTX_DIST_TIMEOUT (seconds, default 60). On ranks other than 0 it lowers spdlog's
// level to warn, so only rank 0 logs progress. The entry point for commands.
DistributedContext& distributed_from_env();
// The process-wide context if distributed_from_env() has made one, else nullptr. The trainer
// uses it when its job names no context.
const DistributedContext* current_distributed();

// Averages the gradients of `params` over ranks in place: flattened into buckets of at most
// `bucket_bytes`, summed across ranks, divided by world_size. A parameter without a gradient
// counts as a zero gradient (another rank may have one) and has one afterwards. A no-op when
// disabled.
void allreduce_gradients(const DistributedContext& ctx, const std::vector<torch::Tensor>& params,
                         int64_t bucket_bytes = int64_t{64} << 20);

// The seconds in BTX_DIST_TIMEOUT, or `fallback` when it is unset (a malformed value is an error).
std::chrono::milliseconds dist_timeout_from_env(std::chrono::milliseconds fallback);

}  // namespace btx
