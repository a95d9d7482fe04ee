// `btx sweep`: the study once per value of one or more config keys, sharing every stage whose
// inputs are the same. Each point of the sweep is a run folder of its own, <root>/<key>=<value>
// (one `btx run` each, locally or through Slurm as its config says); before a point runs, every
// stage whose inputs -- its commands with the run folder left out, the config values it reads,
// the inputs of the stages it needs -- equal those of a stage an earlier point finished is
// copied from there and recorded as done, so a sweep of the finetuning budget trains the seed
// and the experts once. At the end, one table (sweep.json, sweep.md) of every row's mean test
// perplexity against the swept values, and sweep.html with its charts.
//
// Besides the config's keys, the derived key `seed_share` sets the seed's share S of the token
// budget of the seed and the experts together, as the config gives it: seed.steps and
// experts.train.steps become S·B / (the seed's tokens per step) and (1-S)·B / (the experts'
// number x their tokens per step), rounded (BTM's compute split, Li et al. 2022).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/study/study.h"

namespace btx {

// One swept key and its values, from "KEY=V1,V2,...".
struct SweepAxis {
  std::string key;
  std::vector<std::string> values;
};
// An entry without '=', without values, or with a value twice is an error naming `where`.
SweepAxis parse_sweep_axis(const std::string& text, const std::string& where);

// `c` with `key` set to `value`: a config key (set_run_config_value) or seed_share.
RunConfig sweep_config(const RunConfig& c, const std::string& key, const std::string& value);

// One point of the sweep: its settings (key, value) and its run.
struct SweepPoint {
  std::vector<std::pair<std::string, std::string>> settings;
  std::string label;  // "seed_share=0.3" (settings joined by ",")
  Run run;            // root/<label>, with the point's config
};
// Every combination of the axes' values (the first axis slowest), each in root/<label>. A key
// that is unknown or swept twice, or a value refused by the config, is an error before anything
// is written.
std::vector<SweepPoint> sweep_points(const RunConfig& base, const std::vector<SweepAxis>& axes,
                                     const fs::path& root);

// Each stage's inputs as a digest that leaves the run folder out (`run` is the folder its
// commands name), so the same stage of two points has the same key: name -> key.
std::map<std::string, std::string> stage_keys(const Run& run, const std::vector<Stage>& stages);

// What each point shares and runs: per point, the stages whose key equals one of an earlier
// point (stage -> the earlier point's label) and those it runs. Two points with the same keys for
// every stage are an error (the values change nothing).
struct SweepPlan {
  std::vector<std::vector<Stage>> stages;                       // per point, planned
  std::vector<std::map<std::string, std::string>> shared_from;  // per point: stage -> label
};
SweepPlan plan_sweep(const std::vector<SweepPoint>& points);

// Copies every shared stage's outputs from the point that made it into `point`'s run and records
// it as done there (a stage already done there is left alone). Returns the stages copied.
std::vector<std::string> share_stages(const SweepPoint& point, const std::vector<Stage>& stages,
                                      const std::map<std::string, std::string>& shared_from,
                                      const fs::path& root);

// Runs the sweep: prints the plan (what each point shares), then each point's study in turn
// (run_study), then writes root/sweep.json, sweep.md and sweep.html and prints the table.
// `o.dry_run`: the plan only.
void run_sweep(const fs::path& root, const std::vector<SweepAxis>& axes,
               const std::vector<SweepPoint>& points, const StudyOptions& o);

}  // namespace btx
