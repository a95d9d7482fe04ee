// The whole study in one command (`btx run`): the run directory's stages as data, each a list of
// ordinary btx commands (the ones a user could type), the stages it needs, the outputs it makes
// and the config keys it reads. A stage that finished writes stages/<name>.json: a digest of its
// inputs (commands, config values, the outputs of the stages it needs) and the sha256 of every
// output file. On the next run a stage is skipped when that manifest matches its inputs and its
// outputs still hash the same; a stage with changed inputs or a corrupt output is cleaned and run
// again (and says so); one that was interrupted (no manifest) is run again with --resume, so its
// commands continue from their checkpoints.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/analysis/analysis.h"
#include "btx/run/run_dir.h"

namespace btx {

namespace fs = std::filesystem;

// A training job the live view follows through its metrics.jsonl.
struct StageProgress {
  std::string label;  // "seed", "expert python_code", "finetune btx"
  fs::path metrics;   // relative to the run
  int64_t steps = 0;  // total (0: unknown)
  int64_t tokens_per_step = 0;
};

struct Stage {
  Stage() = default;
  Stage(std::string name_, std::string what_, std::vector<std::string> after_,
        std::vector<std::vector<std::string>> commands_, std::vector<fs::path> outputs_,
        std::vector<std::string> config_keys_)
      : name(std::move(name_)),
        what(std::move(what_)),
        after(std::move(after_)),
        commands(std::move(commands_)),
        outputs(std::move(outputs_)),
        config_keys(std::move(config_keys_)) {}

  std::string name;                                // "seed", "merge/btx", "eval/btx", ...
  std::string what;                                // one line for people
  std::vector<std::string> after;                  // the stages whose outputs it reads
  std::vector<std::vector<std::string>> commands;  // btx arguments (no binary), in order
  // Files or folders (every file in them, logs and locks aside); relative to the run unless
  // absolute. Cleaned before a re-run, except outside the run (the shared corpus).
  std::vector<fs::path> outputs;
  std::vector<std::string> config_keys;  // prefixes of run_config_keys() it depends on
  std::vector<StageProgress> progress;
  std::function<void()> prepare;  // in-process set-up before the commands (may be empty)
  // What its commands make, when it changes without the commands changing (a model analysis
  // that gained a field): part of its inputs when not 0, so a stage made by an older btx runs
  // again.
  int version = 0;
  bool exclusive = false;  // runs alone: it starts a pool of processes of its own
};

// One entry of [study] methods, parsed: `btx merge --method <method> [--<param> <value>]...
// --name <name>`.
struct StudyMethod {
  std::string method, name;
  std::map<std::string, std::string> params;
  // What `btx finetune --train` trains after merging (finetune_selections()), "" for none:
  // the method's study_finetune for a routed result, or the entry's --finetune.
  std::string finetune;
  bool trains = false;                          // the merge itself trains (dense): resumable
  AnalysisKind analysis = AnalysisKind::kNone;  // what its analysis stage shows, if it has one
  // The entry's --finetune-steps: its finetuning budget in steps (0: [finetune] steps).
  int64_t finetune_steps = 0;
  // The entry's --proxies: finetuned on MetaMoE's proxies (the study's proxies stage) picked
  // from these domains of the pool corpus (proxy_pool_dir()) instead of the domains' own text.
  std::vector<std::string> proxies;
};

// The corpus folder MetaMoE's proxies are picked from: [corpus] dir with "-pool" appended, built
// by the study (`btx corpus build`) when [study] build_corpus.
fs::path proxy_pool_dir(const RunConfig& c);

// Parses and checks [study] methods: an unknown method, parameter or choice, or a name used
// twice, is an error naming study.methods[i] and the entry.
std::vector<StudyMethod> study_methods(const RunConfig& c);

// Checks that every training and novel domain of [corpus] exists: in the corpus folder, or
// (when [study] build_corpus) among the domains `btx corpus build` makes. An unknown one is an
// error naming it and listing the known ones.
void check_study_domains(const RunConfig& c);

// The study's stages for the run, ordered so that every stage comes after those it needs.
std::vector<Stage> plan_study(const Run& run);

// The live lines of a running stage: each training job's step, loss, tokens/s and ETA, from
// the last record of its metrics.jsonl (jobs that have written none are left out).
std::vector<std::string> stage_progress_lines(const RunDir& run, const Stage& s);

// The models of the results table, as `btx eval` / `btx results` name them, in table order.
std::vector<std::string> study_models(const RunConfig& c);

// Whether a stage can be skipped, and if not why: "not run yet", "interrupted: resuming",
// "inputs changed (...)", "output X is corrupt (checksum differs)", "output X is missing".
struct StageState {
  bool done = false;
  bool clean = false;  // its old outputs must go before it runs again
  std::string reason;
  bool untouched = false;       // no manifest and no outputs: it never ran
  nlohmann::json input_values;  // its inputs now (recorded with their digest, to say what changed)
};
fs::path stage_manifest_path(const RunDir& run, const std::string& stage);
// `output_digests`: the recorded output digests of the stages it needs (name -> digest).
StageState check_stage(const Run& run, const Stage& s,
                       const std::map<std::string, std::string>& output_digests);
// Hashes a finished stage's outputs into stages/<name>.json; returns the outputs' digest.
std::string record_stage(const RunDir& run, const Stage& s, const StageState& state,
                         double seconds);
// The outputs' digest recorded for a stage ("" when none).
std::string recorded_output_digest(const RunDir& run, const std::string& stage);

struct StudyOptions {
  fs::path btx_binary;           // the btx executable the stages run
  bool dry_run = false;          // print the plan and each stage's state, run nothing
  int jobs = 1;                  // stages run side by side (those whose inputs are ready)
  double refresh_seconds = 1.0;  // live view
  double plain_interval = 30.0;  // progress lines when stdout is not a terminal
};

// Runs the stages that are not done, each command a child process whose output goes to
// logs/<stage>.log, up to `jobs` stages side by side (a stage starts when the stages it needs
// are done; the expert pools run alone), with one live view of the whole run. A failed command
// stops the run with an error naming the stage, the command and the log (its last lines printed).
// Ends by printing the results table.
void run_study(const Run& run, const StudyOptions& o);

// The default config (configs/tiny.toml, embedded at build time).
const std::string& default_study_config();

}  // namespace btx
