// A prepared tiny run and the seed-training job on it, for tests that call the trainer in
// process (data parallel, GPU): hidden 32, 2 layers, 6 steps of 2 micro-batches of 8 rows.
#pragma once

#include <filesystem>

#include "btx/config/run_config.h"
#include "btx/run/run_dir.h"
#include "btx/train/trainer.h"
#include "e2e/tiny_corpus.h"

namespace btx::testing {

inline void prepare_tiny_run(const std::filesystem::path& dir,
                             const std::filesystem::path& run_root) {
  auto corpus = make_tiny_corpus(dir / "corpus", 80'000);
  RunConfig c = parse_run_config(tiny_run_config(corpus, 6), "tiny.toml");
  c.model.hidden_size = 32;
  c.model.intermediate_size = 64;
  c.seed_train.grad_accum = 2;
  c.seed_train.warmup_steps = 2;
  c.seed_train.log_every = 2;
  c.seed_train.eval_every = 3;
  c.seed_train.eval_tokens = 200;
  c.seed_train.checkpoint_every = 100;
  c.seed_train.threads = 1;
  const btx::Run run(RunDir{run_root}, c);
  init_run(run);
  ensure_tokenizer(run);
  ensure_data(run);
}

// The seed's training job on a prepared run, written to out_dir.
inline TrainJob tiny_job(const std::filesystem::path& run_root,
                         const std::filesystem::path& out_dir) {
  const RunDir run{run_root};
  const RunConfig c = load_run(run);
  TrainJob job;
  job.name = "tiny";
  job.out_dir = out_dir;
  job.model = c.model;
  job.train = c.seed_train;
  job.seed = c.seed;
  job.data_dir = run.data();
  return job;
}

}  // namespace btx::testing
