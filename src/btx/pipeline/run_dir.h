// The run directory (ARCHITECTURE.md), the single source of truth every stage reads and writes:
// config.toml, tokenizer.model, data/, seed/, eval/. Each stage here is idempotent: a finished
// stage is detected and skipped, so running the pipeline again continues where it stopped.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "btx/config/run_config.h"
#include "btx/train/trainer.h"

namespace btx {

namespace fs = std::filesystem;

struct RunDir {
  fs::path root;
  fs::path config() const { return root / "config.toml"; }
  fs::path tokenizer() const { return root / "tokenizer.model"; }
  fs::path data() const { return root / "data"; }
  fs::path seed() const { return root / "seed"; }
  fs::path eval(const std::string& model) const { return root / "eval" / (model + ".json"); }
};

// Writes the resolved config into a new run, or checks that it equals the run's own (a changed
// config in an existing run is an error naming the first differing line: use a new run folder).
void init_run(const RunDir& run, const RunConfig& config);
// The resolved config of an existing run.
RunConfig load_run(const RunDir& run);

// Stages. Each skips itself when its output is already there.
void ensure_tokenizer(const RunDir& run, const RunConfig& c);
void ensure_data(const RunDir& run, const RunConfig& c);
TrainResult train_seed(const RunDir& run, const RunConfig& c, bool resume, int64_t stop_after = 0);

// Evaluates a checkpoint on `split` of the run's training domains and, for the test split, on
// its novel domains too, recording that as eval/<name>.json.
nlohmann::json evaluate_checkpoint(const RunDir& run, const RunConfig& c, const fs::path& ckpt,
                                   const std::string& name, const std::string& split);

// A readable per-domain table of an evaluation JSON.
std::string format_eval_table(const nlohmann::json& eval);

}  // namespace btx
