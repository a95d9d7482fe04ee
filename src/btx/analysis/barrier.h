// Loss barriers (linear mode connectivity; Frankle et al. 2020, arXiv:1912.05671): the test loss
// of each training domain along the straight line θ(α) = (1-α)·θ_a + α·θ_b between two models of
// one architecture and one origin (two experts, an expert and its seed). Averaging two models is
// the point α = 1/2 of that line, so a barrier on it is what averaging pays; a flat or convex
// path means the two sit in one basin.
//   barrier        = max_α L(α) - (L(0) + L(1)) / 2          (the height, as Frankle et al.)
//   barrier_linear = max_α [L(α) - ((1-α) L(0) + α L(1))]     (above the chord, as Entezari et al.)
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "btx/run/run_dir.h"
#include "btx/util/args.h"

namespace btx {

// The two heights of a loss curve sampled at evenly spaced α from 0 to 1 (at least 2 points).
double barrier_height(const std::vector<double>& loss);
double barrier_above_chord(const std::vector<double>& loss);

struct BarrierOptions {
  int64_t points = 11;     // along the path, both ends included (>= 2)
  int64_t max_tokens = 0;  // test tokens per domain (0: the whole test split)
};

// `btx barrier`'s arguments (util/args.h): --a and --b, or --pairs.
struct BarrierArgs {
  std::string run, a, b;
  bool pairs = false, json = false;
  BarrierOptions opts;
  template <typename V>
  void visit(V& v) {
    v.option("--run", run, "Run directory");
    v.option("--a", a, "One end: experts/X, seed, merged/X (a dense checkpoint)");
    v.option("--b", b, "The other end");
    v.flag("--pairs", pairs, "Every pair of the run's experts, and each with the seed");
    v.option("--points", opts.points, "Points along the path, both ends included");
    v.option("--tokens", opts.max_tokens, "Test tokens per domain (0: the whole split)");
    v.flag("--json", json, "Print the whole result as JSON");
  }
};

// The path between models `a` and `b` (as `btx eval --model` names them: experts/X, seed,
// merged/X, a folder): {"a", "b" (eval names), "alphas": [points], "tokens" per domain,
// "domains": [{"domain", "loss": [points], "ppl": [points], "barrier", "barrier_linear"}],
// "mean": {"loss": [points] (mean over the domains), "ppl", "barrier", "barrier_linear"}}.
// Models that are not checkpoints, of different architectures or tensors, or branched from
// different seeds are errors naming both, before anything is scored.
nlohmann::json loss_barrier(const Run& run, const std::string& a, const std::string& b,
                            const BarrierOptions& opts);

// Every pair of the run's experts and each expert with the seed:
// {"points", "tokens", "paths": [loss_barrier of each]} (the study's analysis/barriers.json).
nlohmann::json expert_barriers(const Run& run, const BarrierOptions& opts);

// A path's losses per domain and point, and its barriers, as a table; expert_barriers() as one
// line per path.
std::string format_barrier(const nlohmann::json& path);
std::string format_barriers(const nlohmann::json& result);

// run/analysis/barrier-<a>--<b>.json for one path; run/analysis/barriers.json for all.
fs::path barrier_path(const RunDir& run, const std::string& a, const std::string& b);
fs::path barriers_path(const RunDir& run);

// What the results' findings state of expert_barriers(): the largest mean barrier above the
// chord over every path; and over the paths between two experts (not those from the seed), how
// much worse each domain's midpoint (the pair's average) is than the pair's better end, on
// average over the pairs and domains.
struct BarrierSummary {
  double max_above_chord = 0;
  int64_t expert_pairs = 0;
  double mean_midpoint_cost = 0;  // a fraction: 0.05 is 5% higher perplexity
};
// nullopt when the result has no path between two experts (or no domain).
std::optional<BarrierSummary> barrier_summary(const nlohmann::json& result);

}  // namespace btx
