// A sweep's results (study/sweep.h runs it): every row of the points' results tables against the
// swept values, as JSON, Markdown and a self-contained HTML page with one chart per measure.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace btx {

namespace fs = std::filesystem;

// What the sweep knows of one point beyond its run's results.json.
struct SweepPointResult {
  std::string label;                                          // "seed_share=0.3"
  std::vector<std::pair<std::string, std::string>> settings;  // (key, value)
  fs::path run;
  double seconds = 0;         // wall time of the point (shared stages copied, the rest run)
  int64_t seed_tokens = 0;    // the seed's training tokens
  int64_t expert_tokens = 0;  // all experts' together
};

// {"axes": [{"key", "values"}], "models": [row names, in the first point's order, then any
//  others], "points": [{"label", "settings": {key: value}, "run", "seconds", "seed_tokens",
//  "expert_tokens", "seed_share": seed / (seed + experts), "rows": {model: {"train_mean_ppl",
//  "novel_mean_ppl", "gap_to_ensemble_all", "training_tokens"}}, "findings": [...]}]}.
// A point without results.json is an error naming it.
// A sweep of `random_seed` alone (the study under several seeds) also has "seeds":
// {"count", "rows": {model: {"train_mean_ppl"/"novel_mean_ppl": {"mean", "sd", "min", "max"}}},
//  "orderings": [{"better", "worse", "column", "held", "of"}]}: for every pair of rows present at
// every point, the one with the lower mean over seeds, and in how many seeds it was lower.
nlohmann::json sweep_results(
    const std::vector<std::pair<std::string, std::vector<std::string>>>& axes,
    const std::vector<SweepPointResult>& points);

// Tables: mean perplexity on the training domains and on the novel domains, a row per model and
// a column per point; across seeds, each row's mean and spread and the orderings that did not
// hold in every seed; then each point's token split and time.
std::string sweep_markdown(const nlohmann::json& sweep);

// One HTML page: the tables' figures as line charts against the swept values.
std::string render_sweep_html(const nlohmann::json& sweep);

// root/sweep.json, sweep.md and sweep.html, each written atomically.
void write_sweep(const fs::path& root, const nlohmann::json& sweep);

}  // namespace btx
