// The training loop shared by every stage that trains (seed, experts, dense baseline, MoE
// finetuning): AdamW, warmup + cosine schedule, clipping, accumulation, per-domain validation,
// metrics as JSON lines, periodic checkpoints into the stage folder, and exact resume.
// It does not decide what to train on: the caller passes the data mixture and the start point.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "btx/config/run_config.h"
#include "btx/data/sampler.h"
#include "btx/model/llama.h"

namespace btx {

namespace fs = std::filesystem;

struct DistributedContext;  // train/distributed.h

struct TrainJob {
  std::string name = "train";  // shown in logs
  fs::path out_dir;            // stage folder: checkpoint files + metrics.jsonl
  fs::path init_from;          // checkpoint to start from; empty: fresh weights from `model`
  ModelConfig model;
  TrainConfig train;
  uint64_t seed = 0;                 // weight init and data order
  fs::path data_dir;                 // token shards (run/data)
  std::vector<std::string> domains;  // validation domains (empty: all of the shard set)
  bool resume = false;               // continue a checkpoint left in out_dir
  // Stop after this step with a resumable checkpoint, as if interrupted (0: run to the end).
  // For time-limited job slots, and for testing that a resumed run equals an uninterrupted one.
  int64_t stop_after = 0;
  DataPartition partition;  // a share of the training data (random-split experts)
  // Files of out_dir carried into every checkpoint (e.g. an expert's expert.json).
  std::vector<std::string> keep_files;
  // Which parameters train (by name); empty: all. The others are frozen (e.g. router-only MoE
  // finetuning).
  std::function<bool(const std::string&)> trainable;
  // Parts of trainable parameters that stay frozen: per parameter name, a 0/1 tensor of its
  // shape, 0 where the parameter must keep its starting value bitwise (no gradient, no weight
  // decay). E.g. FlexOlmo's anchor row of each router. A name the model lacks is an error.
  std::map<std::string, torch::Tensor> update_masks;
  // Called before each micro-batch's forward with the domain of each of its rows (tag-routed
  // models send each row to its domain's expert).
  std::function<void(CausalLM&, const std::vector<std::string>& row_domains)> before_forward;
  // Data parallel group: rank r trains on rows [r*B/W, (r+1)*B/W) of every micro-batch and the
  // gradients are averaged, so W ranks follow the single-process run on the whole batch. Only
  // rank 0 logs and writes out_dir. Null: distributed_from_env()'s context if a command made one,
  // else one process.
  const DistributedContext* dist = nullptr;
};

struct TrainResult {
  int64_t steps = 0;
  int64_t tokens = 0;
  bool skipped = false;                      // out_dir already held a finished run
  bool finished = false;                     // reached the last step (not stopped early)
  std::map<std::string, double> valid_loss;  // last validation, per domain (rank 0 only)
  CausalLM model{nullptr};                   // the trained model (null when skipped)
};

TrainResult train(const TrainJob& job);

}  // namespace btx
