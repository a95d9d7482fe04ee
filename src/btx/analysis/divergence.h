// How far the experts moved: per layer and per parameter group (embedding with the LM head,
// attention, norms, FFN), each expert's distance from the seed and the experts' distances from
// one another. BTM found that parameter averaging works only while the experts stay close to
// their seed (Li et al. 2022, arXiv:2208.03306); this measures how close they stayed.
//
// With Δ_e = θ_e - θ_seed over the parameters of one cell (a layer's group):
//   from_seed[e]    = ‖Δ_e‖ / ‖θ_seed‖                       (relative L2 distance from the seed)
//   between[a][b]   = ‖θ_a - θ_b‖ / ‖θ_seed‖ = ‖Δ_a - Δ_b‖ / ‖θ_seed‖
//   cosine[a][b]    = <Δ_a, Δ_b> / (‖Δ_a‖ ‖Δ_b‖)              (do the updates point one way?)
// all from the Gram matrix of the updates, accumulated in float64 one tensor at a time (the
// checkpoints are streamed, never all in memory). Averaging the experts moves the model by the
// mean update, whose size is sqrt(Σ_ab <Δ_a, Δ_b>) / N: with orthogonal updates (cosine 0) it is
// 1/sqrt(N) of an expert's, so averaging undoes most of what each expert learned.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "btx/run/run_dir.h"

namespace btx {

// One cell's statistics from the squared norm of the seed's parameters and the Gram matrix
// gram[a][b] = <Δ_a, Δ_b> of the experts' updates: {"seed_norm", "from_seed": [E],
// "between": [E][E], "cosine": [E][E] (0 where an update is zero), "mean_update": ‖mean Δ‖ /
// ‖θ_seed‖ (the average's distance from the seed), "mean_from_seed", "mean_between",
// "mean_cosine" (over the pairs a < b; null with one expert)}.
nlohmann::json divergence_cell(double seed_sq, const std::vector<std::vector<double>>& gram);

// The layer of a parameter named as in model.safetensors (model.layers.<i>.*), or -1 for the
// model-level ones (the token embedding, the final norm, the LM head).
int param_layer(const std::string& name);

// The run's experts (finished, dense, branched from its seed) against its seed:
// {"experts": [names], "groups": [...], "cells": [{"layer": i or "model", "group", ...
//  divergence_cell}], "by_group": {group: divergence_cell over every layer}, "total":
//  divergence_cell over every parameter}. Experts of another architecture than the seed's are an
// error naming both.
nlohmann::json divergence_analysis(const RunDir& run);

// The analysis as a table: per layer and group, the mean distance from the seed, between the
// experts, the mean cosine of the updates and the average's distance from the seed.
std::string format_divergence(const nlohmann::json& result);

// run/analysis/divergence.json
fs::path divergence_path(const RunDir& run);

// What the results' findings state of a divergence analysis: over every parameter, how far the
// experts moved from the seed, the mean cosine of their updates (0 with one expert) and how far
// their average moved; and each group's mean distance from the seed, in the file's order.
struct DivergenceSummary {
  double mean_from_seed = 0;
  double mean_cosine = 0;
  double mean_update = 0;
  std::vector<std::pair<std::string, double>> group_from_seed;
};
// From divergence_analysis()'s JSON; nullopt when it has no total.
std::optional<DivergenceSummary> divergence_summary(const nlohmann::json& result);

}  // namespace btx
