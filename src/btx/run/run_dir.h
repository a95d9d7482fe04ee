// The run directory (docs/design.md, "The pipeline"), the single source of truth every stage reads
// and writes: config.toml, tokenizer.model, data/, seed/, eval/. Each stage here is idempotent: a
// finished stage is detected and skipped, so running the pipeline again continues where it stopped.
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "btx/config/run_config.h"
#include "btx/corpus/corpus.h"
#include "btx/eval/evaluate.h"
#include "btx/train/trainer.h"
#include "btx/util/args.h"

namespace btx {

namespace fs = std::filesystem;

// The tokenizer of the run (or model folder) `dir`: its tokenizer.json when it has one, else its
// tokenizer.model (which may not exist yet).
inline fs::path run_tokenizer_in(const fs::path& dir) {
  return fs::exists(dir / "tokenizer.json") ? dir / "tokenizer.json" : dir / "tokenizer.model";
}

struct RunDir {
  fs::path root;
  fs::path config_file() const { return root / "config.toml"; }
  // The run's tokenizer: tokenizer.json (tokenizer_config.json beside it) when it was imported
  // with a Hugging Face model, else the sentencepiece tokenizer.model btx trains.
  fs::path tokenizer_file() const { return run_tokenizer_in(root); }
  fs::path data() const { return root / "data"; }
  fs::path seed() const { return root / "seed"; }
  fs::path eval(const std::string& model) const { return root / "eval" / (model + ".json"); }
};

class Tokenizer;
class ShardSet;

// A run, opened once: its folder (the paths of RunDir) with its resolved config, and its
// tokenizer and token shards opened on first use and kept. Copies share what was opened. Every
// stage and analysis of the run takes one; a sub-run (the random split, a mode's experts, a
// sweep's point) is a Run of its own folder and config.
class Run : public RunDir {
 public:
  // The run in `root`, with its config.toml; a folder without one is an error saying so.
  static Run open(const fs::path& root);
  // A run whose config is given (a run being made: init_run writes or checks it).
  Run(RunDir dir, RunConfig config);

  const RunConfig& config() const;
  // tokenizer.model and data/, loaded on first use (an error when the stage that makes them
  // has not run).
  const Tokenizer& tokenizer() const;
  const ShardSet& shards() const;

 private:
  struct State;
  std::shared_ptr<State> s_;
};

// Writes the resolved config into a new run, or checks it against the run's own: keys that
// differ (outside [study], which only says what `btx run` adds) are an error naming them and
// their two values, unless `force`, which adopts the new config. [study] changes are adopted.
void init_run(const Run& run, bool force = false);
// The resolved config of an existing run.
RunConfig load_run(const RunDir& run);

// Stages. Each skips itself when its output is already there.
void ensure_tokenizer(const Run& run);
void ensure_data(const Run& run);
TrainResult train_seed(const Run& run, bool resume, int64_t stop_after = 0);

// `btx prepare`'s arguments (util/args.h); `btx seed` takes them too.
struct PrepareArgs {
  std::string config, run;
  bool force = false;
  template <typename V>
  void visit(V& v) {
    v.option("--config", config, "Run config (TOML); default: the run's own");
    v.option("--run", run, "Run directory");
    v.flag("--force", force,
           "Adopt --config in a run made with another config (what it changes is made again)");
  }
};
// `btx seed`'s arguments.
struct SeedArgs {
  PrepareArgs prepare;
  bool resume = false;
  int64_t stop_after = 0;
  template <typename V>
  void visit(V& v) {
    prepare.visit(v);
    v.flag("--resume", resume, "Continue an interrupted seed from its checkpoint");
    v.option("--stop-after", stop_after,
             "Stop with a resumable checkpoint after this step (for time-limited slots)");
  }
};

// A training job of the run, as every stage that trains starts it: called `name`, writing to
// `out_dir`, the run's model config on the run's data with `train`'s settings, its seed derived
// from the run's seed and `seed_tag` (empty: the run's seed itself). The caller adds what is
// its own (start point, mixture, resume, ...).
TrainJob run_train_job(const Run& run, const std::string& name, const fs::path& out_dir,
                       const TrainConfig& train, const std::string& seed_tag);

// A model named relative to the run (seed, experts/x, merged/y) or a path of its own; one that
// exists neither way is an error naming both.
fs::path resolve_model_path(const RunDir& run, const std::string& model);
// The name a model's evaluation is recorded under (eval/<name>.json): merged/x -> x,
// experts/x -> expert-x, else the folder name.
std::string eval_name(const fs::path& model);
// The model of the run an eval name stands for: seed, expert-x -> experts/x, x -> merged/x.
std::string model_of_eval_name(const std::string& name);

// The run's evaluation settings: the seed's window length and batch size, on `split`.
EvalOptions run_eval_options(const RunConfig& c, const std::string& split);
// The run's novel domains (config [corpus] novel), read from its corpus folder.
std::vector<CorpusDomain> run_novel_domains(const RunConfig& c);
// Evaluates any model on opts.split of the run's training domains and on `novel` (scored with
// the test split only), recording a test-split result as eval/<name>.json.
nlohmann::json evaluate_in_run(const RunDir& run, Scorer& scorer, const std::string& name,
                               const std::vector<CorpusDomain>& novel, const EvalOptions& opts);

// Up to `windows` held-out windows (n, T+1) of one of the run's domains, never scored by
// evaluation: a training domain's validation split, or the chunks a novel domain sets aside.
// An unknown domain is an error listing the run's domains.
torch::Tensor domain_heldout_windows(const Run& run, const std::string& domain, int64_t windows,
                                     int64_t seq_len);

// A readable per-domain table of an evaluation JSON.
std::string format_eval_table(const nlohmann::json& eval);
// One row per evaluation JSON: perplexity per training domain and their mean, per novel domain
// and their mean, parameters total / active and forward GFLOPs per token.
std::string format_comparison(const std::vector<nlohmann::json>& evals);

}  // namespace btx
