// The experts of a run (Branch-Train-Merge, Li et al. 2022, arXiv:2208.03306): each is branched
// from the seed as an exact copy of its weights, then trains alone on its own mixture, with no
// communication, as an ordinary job against the run directory. This file resolves the expert
// list, branches, trains one expert under a lock, and reports status (growing the forest, which
// averages experts, is merge/grow.h's).
// Scheduling many experts is launch.h's job; this file never starts processes.
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "btx/data/sampler.h"
#include "btx/run/run_dir.h"
#include "btx/train/checkpoint.h"

namespace btx {

namespace fs = std::filesystem;

struct ExpertSpec {
  std::string name;
  std::map<std::string, double> domains;  // training mixture: domain -> weight
  DataPartition partition;                // random split: this expert's share of the data
  ExpertMode mode = ExpertMode::kAll;     // what trains ([experts] mode)
  // The domains it trains on (weight > 0), in name order.
  std::vector<std::string> trained_domains() const;
  nlohmann::json to_json() const;  // "mode" only when not "all" (older expert.json have none)
  static ExpertSpec from_json(const nlohmann::json& j, const std::string& where);
};

// The experts the run's config asks for, checked against the domains that have data.
std::vector<ExpertSpec> resolve_experts(const RunConfig& c,
                                        const std::vector<std::string>& domains);

fs::path experts_dir(const RunDir& run);
fs::path expert_dir(const RunDir& run, const std::string& name);
// The experts branched so far (folders with expert.json), sorted by name. A swap's temporary
// folder (util/fs.h is_temp_name) is never an expert; a folder whose expert.json names another
// expert is an error.
std::vector<ExpertSpec> list_experts(const RunDir& run);
// Applies the swap rule (util/fs.h tidy_dir) to the seed and every expert whose lock no live
// process holds: a folder that a crash left moved aside is restored, temporaries of processes that
// are gone are removed. status, merge, launch and run call it before reading the experts.
// Returns what it did, one line each (each also logged as a warning).
std::vector<std::string> tidy_run(const RunDir& run);
// The spec of one branched expert; an unknown name is an error listing the known ones.
ExpertSpec find_expert(const RunDir& run, const std::string& name);

// Creates experts/<name>/ for every expert of the config that has none yet: the seed's weights
// copied byte for byte, plus expert.json. Needs a finished seed. Returns the names branched.
std::vector<std::string> branch_experts(const Run& run);

// `btx branch`'s arguments (util/args.h).
struct BranchArgs {
  std::string run, add;
  std::vector<std::string> domains;
  template <typename V>
  void visit(V& v) {
    v.option("--run", run, "Run directory");
    v.option("--add", add, "Name of a new expert to add");
    v.option("--domains", domains, "With --add: its domains, NAME or NAME=WEIGHT");
  }
};

// BTM's domain posterior of the experts on held-out text: up to `windows` windows of `domains`
// (a training domain's validation split, a novel domain's set-aside chunks), turned into the
// ensemble's cached prior (p(j | window) by Bayes' rule, an EMA of rate `alpha` over the
// windows; eval/ensemble.h). Returns name -> weight (sums to 1).
std::map<std::string, double> expert_posterior(const Run& run,
                                               const std::vector<std::string>& expert_names,
                                               const std::vector<std::string>& domains,
                                               int64_t windows = 32, double alpha = 0.3);

// Checks an expert's mixture: every domain has data in the run (`have`), every weight >= 0.
void check_domains(const std::map<std::string, double>& mix, const std::vector<std::string>& have,
                   const std::string& expert);
// The seed's final training state; an error naming the command to run when it is not finished.
TrainState require_finished_seed(const RunDir& run);

// Trains one branched expert (resumable) while holding experts/<name>.lock.
TrainResult train_expert(const Run& run, const std::string& name, bool resume,
                         int64_t stop_after = 0, int threads = 0);

// `btx train`'s arguments (util/args.h); `btx launch` starts each expert with them.
struct TrainExpertArgs {
  std::string run, expert;
  bool resume = false;
  int64_t stop_after = 0;
  int threads = 0;
  template <typename V>
  void visit(V& v) {
    v.option("--run", run, "Run directory");
    v.option("--expert", expert, "Expert name");
    v.flag("--resume", resume, "Continue from the expert's last checkpoint");
    v.option("--stop-after", stop_after,
             "Stop with a resumable checkpoint after this step (time-limited slots)");
    v.option("--threads", threads, "LibTorch intra-op threads (0: the config's)");
  }
};

// Exclusive ownership of an expert's training: a lock file holding pid, host and start time.
// A lock left by a process that is gone (same host) is reported and taken over; a live holder
// or a holder on another host is an error naming it.
class ExpertLock {
 public:
  explicit ExpertLock(fs::path file);
  ~ExpertLock();
  ExpertLock(const ExpertLock&) = delete;
  ExpertLock& operator=(const ExpertLock&) = delete;
  // The holder recorded in `file`, if any: {"pid", "host", "started"}.
  static std::optional<nlohmann::json> holder(const fs::path& file);
  // True when `holder` names a live process on this host.
  static bool alive(const nlohmann::json& holder);

 private:
  fs::path file_;
};

fs::path expert_lock_file(const RunDir& run, const std::string& name);

// The last training record (one with a loss: step, loss, tokens/s, ...) of a metrics.jsonl, or
// nullopt when there is none yet. Lines cut by a crash are skipped.
std::optional<nlohmann::json> last_training_record(const fs::path& metrics_file);
// Seconds a job still needs after `record` (its last training record): the steps left of
// `steps`, each of `tokens_per_step` tokens, at the record's tokens/s; -1 when unknown.
double training_eta_seconds(const nlohmann::json& record, int64_t steps, int64_t tokens_per_step);

// One row per stage and expert: state (not started / running / stopped / done / failed), last
// step and loss, from the files of the run directory alone.
struct StageStatus {
  std::string name, state;
  int64_t step = 0, steps = 0;
  double loss = 0;
  std::string detail;
};
std::vector<StageStatus> run_status(const RunDir& run);
std::string format_status(const std::vector<StageStatus>& rows);

}  // namespace btx
