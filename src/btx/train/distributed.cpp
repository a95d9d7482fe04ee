// Data parallel process groups: environment parsing, a TCPStore rendezvous with a WORLD_SIZE
// agreement check in front of Gloo's (which would otherwise just hang), and bucketed gradient
// averaging. No overlap of communication with the backward pass: the models here are small.
#include "btx/train/distributed.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "btx/util/error.h"

namespace btx {

namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

int64_t parse_int(const std::string& name, const std::string& value) {
  size_t used = 0;
  int64_t out = 0;
  try {
    out = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  BTX_CHECK(used == value.size() && used > 0, "{}='{}' is not an integer", name, value);
  return out;
}

std::string seconds(std::chrono::milliseconds t) {
  return fmt::format("{:g} s", static_cast<double>(t.count()) / 1000.0);
}

// The message of a c10 or c10d exception without its C++ backtrace, on one line.
std::string short_what(const std::exception& e) {
  std::string s;
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) {
    s = c->what_without_backtrace();
  } else {
    s = e.what();
  }
  for (char& ch : s) {
    if (ch == '\n') ch = ' ';
  }
  return s;
}

std::string get_string(c10d::Store& store, const std::string& key) {
  const auto v = store.get(key);
  return std::string(v.begin(), v.end());
}

void set_string(c10d::Store& store, const std::string& key, const std::string& value) {
  store.set(key, std::vector<uint8_t>(value.begin(), value.end()));
}

// Silences glog (c10d's log) for one scope: the rendezvous logs its own timeouts on stderr,
// which would only repeat the btx::Error that follows.
class QuietTorchLog {
 public:
#ifdef C10_USE_GLOG
  QuietTorchLog() : saved_(FLAGS_minloglevel) {
    FLAGS_minloglevel = google::GLOG_FATAL;
  }
  ~QuietTorchLog() {
    FLAGS_minloglevel = saved_;
  }

 private:
  int saved_;
#endif
};

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// Runs one collective; a failure (usually another rank that stopped) becomes a btx::Error.
template <typename F>
void collective(const DistributedContext& ctx, const char* what, F&& f) {
  try {
    f()->wait();
  } catch (const std::exception& e) {
    fail(
        "data parallel {} failed on rank {} of {} ({}): another rank has probably stopped; "
        "see its error",
        what, ctx.rank, ctx.world_size, short_what(e));
  }
}

// Consecutive runs of tensors of one dtype and device, each run at most `max_bytes` (a larger
// tensor is a run of its own), handed to `f` as one flat contiguous buffer; `f` may change the
// buffer in place and the tensors get its contents back.
template <typename F>
void for_each_bucket(const std::vector<torch::Tensor>& tensors, int64_t max_bytes, F&& f) {
  torch::NoGradGuard no_grad;
  size_t begin = 0;
  while (begin < tensors.size()) {
    size_t end = begin + 1;
    int64_t bytes = tensors[begin].nbytes();
    while (end < tensors.size() && tensors[end].dtype() == tensors[begin].dtype() &&
           tensors[end].device() == tensors[begin].device() &&
           bytes + static_cast<int64_t>(tensors[end].nbytes()) <= max_bytes) {
      bytes += tensors[end].nbytes();
      ++end;
    }
    std::vector<torch::Tensor> flat_parts;
    for (size_t i = begin; i < end; ++i) flat_parts.push_back(tensors[i].reshape({-1}));
    torch::Tensor flat = torch::cat(flat_parts);
    f(flat);
    int64_t offset = 0;
    for (size_t i = begin; i < end; ++i) {
      const int64_t n = tensors[i].numel();
      tensors[i].copy_(flat.narrow(0, offset, n).view_as(tensors[i]));
      offset += n;
    }
    begin = end;
  }
}

std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  if (auto ifname = env("GLOO_SOCKET_IFNAME")) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(*ifname);
  }
  if (is_loopback(master_addr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

std::chrono::milliseconds dist_timeout_from_env(std::chrono::milliseconds fallback) {
  const auto v = env("BTX_DIST_TIMEOUT");
  if (!v) return fallback;
  size_t used = 0;
  double s = 0;
  try {
    s = std::stod(*v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  BTX_CHECK(used == v->size() && used > 0 && s > 0 && s < 1e7,
            "BTX_DIST_TIMEOUT='{}' is not a positive number of seconds", *v);
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000.0));
}

DistributedContext init_distributed_from_env(std::chrono::milliseconds timeout,
                                             std::chrono::milliseconds op_timeout) {
  DistributedContext ctx;
  // srun exports SLURM_NTASKS and SLURM_PROCID in the batch script too; only a task of an srun
  // step (SLURM_STEP_NUM_TASKS set) is one of several processes.
  const bool in_srun_step = env("SLURM_STEP_NUM_TASKS").has_value();
  // The torchrun-style variable, else (inside an srun step) Slurm's: its name and value.
  const auto launcher_var = [&](const char* name, const char* slurm_name) {
    auto value = env(name);
    if (!value && in_srun_step) return std::make_pair(std::string(slurm_name), env(slurm_name));
    return std::make_pair(std::string(name), value);
  };
  const auto [world_var, world] = launcher_var("WORLD_SIZE", "SLURM_NTASKS");
  const int64_t world_size = world ? parse_int(world_var, *world) : 1;
  BTX_CHECK(world_size >= 1 && world_size <= 1 << 20, "{}={} must be a number of processes >= 1",
            world_var, world_size);
  if (world_size == 1) return ctx;

  const auto [rank_var, rank_str] = launcher_var("RANK", "SLURM_PROCID");
  BTX_CHECK(rank_str.has_value(),
            "{}={} is set but RANK is not: each process needs its own RANK, 0 to {}", world_var,
            world_size, world_size - 1);
  const int64_t rank = parse_int(rank_var, *rank_str);
  BTX_CHECK(rank >= 0 && rank < world_size, "{}={} is out of range for {}={} (0 to {})", rank_var,
            rank, world_var, world_size, world_size - 1);
  const auto [local_var, local] = launcher_var("LOCAL_RANK", "SLURM_LOCALID");
  const int64_t local_rank = local ? parse_int(local_var, *local) : 0;

  const auto addr = env("MASTER_ADDR");
  BTX_CHECK(addr.has_value(),
            "{}={} needs MASTER_ADDR, the host where rank 0 serves the rendezvous (e.g. "
            "127.0.0.1 on one machine; under Slurm the first host of $SLURM_JOB_NODELIST)",
            world_var, world_size);
  const auto port_str = env("MASTER_PORT");
  BTX_CHECK(port_str.has_value(),
            "{}={} needs MASTER_PORT, a free TCP port on MASTER_ADDR={} (e.g. 29500)", world_var,
            world_size, *addr);
  const int64_t port = parse_int("MASTER_PORT", *port_str);
  BTX_CHECK(port > 0 && port < 65536, "MASTER_PORT={} is not a TCP port (1 to 65535)", port);
  const std::string backend = env("BTX_DIST_BACKEND").value_or("gloo");
#ifdef USE_C10D_NCCL
  BTX_CHECK(backend == "gloo" || backend == "nccl",
            "BTX_DIST_BACKEND='{}' is not a backend (gloo or nccl)", backend);
#else
  BTX_CHECK(backend == "gloo",
            "BTX_DIST_BACKEND='{}': this LibTorch build has only the gloo backend", backend);
#endif

  ctx.rank = static_cast<int>(rank);
  ctx.world_size = static_cast<int>(world_size);
  ctx.local_rank = static_cast<int>(local_rank);
  ctx.backend = backend;
  ctx.endpoint = fmt::format("{}:{}", *addr, port);

  // Rendezvous: rank 0 serves the store, every rank (rank 0 included) connects to it. Under
  // torchrun's static rendezvous its agent already serves MASTER_PORT: every rank is a client
  // there, in a key space of its own per restart (as torch.distributed's env:// does).
  const bool agent_store = env("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(port);
  so.isServer = rank == 0 && !agent_store;
  so.numWorkers = static_cast<size_t>(world_size);
  so.waitWorkers = false;  // the WORLD_SIZE check below waits, with a clearer error
  so.timeout = timeout;
  c10::intrusive_ptr<c10d::Store> store;
  QuietTorchLog quiet;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(*addr, so);
    if (agent_store) {
      store = c10::make_intrusive<c10d::PrefixStore>(
          "/worker/attempt_" + env("TORCHELASTIC_RESTART_COUNT").value_or("0"), store);
    }
  } catch (const std::exception& e) {
    if (so.isServer) {
      fail(
          "rank 0 cannot serve the rendezvous at MASTER_ADDR:MASTER_PORT={} ({}): is the port "
          "taken, or MASTER_ADDR not this machine?",
          ctx.endpoint, short_what(e));
    }
    fail(
        "rank {} cannot reach the rendezvous at MASTER_ADDR:MASTER_PORT={} within {} "
        "(BTX_DIST_TIMEOUT): is rank 0 running there? ({})",
        rank, ctx.endpoint, seconds(timeout), short_what(e));
  }

  // Every rank agrees on WORLD_SIZE, and each RANK is taken once. A rank other than 0 reads rank
  // 0's value before publishing its own, so rank 0 (the store's server) never exits before the
  // others have their answer.
  const auto key = [](int64_t r) { return fmt::format("btx/world_size/{}", r); };
  const std::string mine = std::to_string(world_size);
  int64_t waiting_for = 0;
  try {
    BTX_CHECK(store->add(fmt::format("btx/rank_taken/{}", rank), 1) == 1,
              "two processes have {}={} (at {}): each rank must be started once", rank_var, rank,
              ctx.endpoint);
    if (rank == 0) {
      set_string(*store, key(0), mine);
      for (int64_t r = 1; r < world_size; ++r) {
        waiting_for = r;
        const std::string theirs = get_string(*store, key(r));
        BTX_CHECK(theirs == mine, "rank {} has WORLD_SIZE={} but rank 0 has WORLD_SIZE={}", r,
                  theirs, mine);
      }
    } else {
      const std::string rank0 = get_string(*store, key(0));
      set_string(*store, key(rank), mine);
      BTX_CHECK(rank0 == mine, "rank {} has WORLD_SIZE={} but rank 0 has WORLD_SIZE={}", rank, mine,
                rank0);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(
        "rank {} waited {} (BTX_DIST_TIMEOUT) at {} for rank {} of WORLD_SIZE={} to join: start "
        "all {} processes with the same MASTER_ADDR and MASTER_PORT ({})",
        rank, seconds(timeout), ctx.endpoint, waiting_for, world_size, world_size, short_what(e));
  }

  try {
    if (backend == "gloo") {
      auto opts = c10d::ProcessGroupGloo::Options::create(op_timeout);
      opts->devices.push_back(gloo_device(*addr));
      ctx.pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, ctx.rank, ctx.world_size, opts);
    }
#ifdef USE_C10D_NCCL
    if (backend == "nccl") {
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(local_rank));
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = op_timeout;
      ctx.pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, ctx.rank, ctx.world_size, opts);
    }
#endif
  } catch (const std::exception& e) {
    fail("rank {}: starting the {} process group of {} ranks at {} failed: {}", rank, backend,
         world_size, ctx.endpoint, short_what(e));
  }
  return ctx;
}

void DistributedContext::barrier() const {
  if (!enabled()) return;
  collective(*this, "barrier", [&] { return pg->barrier(); });
}

void DistributedContext::broadcast(const std::vector<torch::Tensor>& tensors) const {
  if (!enabled()) return;
  for_each_bucket(tensors, int64_t{64} << 20, [&](torch::Tensor& flat) {
    std::vector<torch::Tensor> v{flat};
    c10d::BroadcastOptions o;
    o.rootRank = 0;
    collective(*this, "broadcast", [&] { return pg->broadcast(v, o); });
  });
}

double DistributedContext::mean(double value) const {
  if (!enabled()) return value;
  std::vector<torch::Tensor> v{torch::full({1}, value, torch::kDouble)};
  collective(*this, "all-reduce", [&] { return pg->allreduce(v); });
  return v[0].item<double>() / static_cast<double>(world_size);
}

int64_t DistributedContext::sum(int64_t value) const {
  if (!enabled()) return value;
  std::vector<torch::Tensor> v{torch::full({1}, value, torch::kLong)};
  collective(*this, "all-reduce", [&] { return pg->allreduce(v); });
  return v[0].item<int64_t>();
}

void allreduce_gradients(const DistributedContext& ctx, const std::vector<torch::Tensor>& params,
                         int64_t bucket_bytes) {
  if (!ctx.enabled()) return;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (!p.requires_grad()) continue;
    if (!p.grad().defined()) {
      auto& g = const_cast<torch::Tensor&>(p).mutable_grad();
      g = torch::zeros_like(p);
    }
    grads.push_back(p.grad());
  }
  for_each_bucket(grads, bucket_bytes, [&](torch::Tensor& flat) {
    std::vector<torch::Tensor> v{flat};
    collective(ctx, "gradient all-reduce", [&] { return ctx.pg->allreduce(v); });
    flat.div_(ctx.world_size);
  });
}

namespace {
std::mutex g_mutex;
std::unique_ptr<DistributedContext> g_context;
}  // namespace

DistributedContext& distributed_from_env() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_context) {
    auto ctx = init_distributed_from_env(dist_timeout_from_env(std::chrono::seconds(60)));
    g_context = std::make_unique<DistributedContext>(std::move(ctx));
    if (g_context->enabled()) {
      spdlog::info("data parallel: rank {} of {} ({}, rendezvous {})", g_context->rank,
                   g_context->world_size, g_context->backend, g_context->endpoint);
      if (!g_context->is_main()) spdlog::set_level(spdlog::level::warn);
    }
  }
  return *g_context;
}

const DistributedContext* current_distributed() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_context.get();
}

}  // namespace btx
