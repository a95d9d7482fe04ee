// What the report shows of one model beyond its scores, computed once by the study's analysis
// stage and kept as analysis/<eval name>.json:
//   routed models (MoE / SMEAR): routing_analysis() over the training and novel domains, plus a
//     token sample of each (the first tokens of a test window: per token its piece and per layer
//     its experts and weights);
//   ensembles (a merged folder whose merge.json method is "ensemble"): BTM's updating posterior
//     over the experts p(j | x_<=t) along a test window of each domain (Li et al. 2022,
//     arXiv:2208.03306), whatever prior the ensemble evaluates with, plus the pieces;
//   both: their per-token gain over the experts' average and over the seed, binned by the
//     seed's predictive entropy (token_gain.h), as "token_gain" (not for sequence-level routers,
//     whose loss at a token reads the tokens after it);
//   other models: nothing to analyse.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/model/router.h"
#include "btx/run/model_folder.h"
#include "btx/run/run_dir.h"
#include "btx/util/args.h"

namespace btx {

// Tokens per domain of a routed model's token sample.
inline constexpr int64_t kAnalysisSampleTokens = 48;
// Tokens per domain along which the ensemble's posterior is followed (at most the seq_len).
inline constexpr int64_t kAnalysisPosteriorTokens = 128;

// What the analysis shows of a model: its routing (routed models, except those routed by the
// domain label, which only follows the label the analysis does not pass), the posterior along
// sequences (ensembles), or nothing. One rule for the model folders the report reads and for
// the study's planner, which knows the merge methods' results before they exist.
enum class AnalysisKind { kNone, kRouting, kPosterior };
AnalysisKind analysis_kind(bool ensemble, const RouterTraits* router);
// analysis_kind() of a model folder (a checkpoint or a merged description).
AnalysisKind analysis_kind(const ModelFolder& model);
bool has_analysis(const ModelFolder& model);
// run/analysis/<eval_name>.json
fs::path analysis_path(const RunDir& run, const std::string& eval_name);

// Routed: {"kind": "routing", "model": eval name, ...routing_analysis's fields, "samples":
//   {domain: [{"piece", "layers": [{"experts", "weights"}]}]}}.
// Ensemble: {"kind": "ensemble", "model", "experts": [names], "domains": [...], "novel_domains":
//   [...], "samples": {domain: {"pieces": [n+1], "posterior": [n][E]}}}, posterior row t the
//   weights p(j | x_0..x_t) that predict piece t+1 (row 0 uniform: no evidence yet).
// Any other model is an error saying so.
// The model folder is opened once by the caller: each of its files is read once.
nlohmann::json model_analysis(const Run& run, const ModelFolder& model);

// `btx analyze`'s arguments (util/args.h).
struct AnalyzeArgs {
  std::string run;
  std::vector<std::string> models;
  bool divergence = false;
  template <typename V>
  void visit(V& v) {
    v.option("--run", run, "Run directory");
    v.option("--model", models,
             "Models, e.g. merged/btx,merged/ensemble-all (default: every routed model and "
             "ensemble in <run>/merged)");
    v.flag("--divergence", divergence,
           "Only the experts' divergence: relative L2 distance from the seed and between "
           "experts, cosine of their updates, per layer and group");
  }
};

}  // namespace btx
