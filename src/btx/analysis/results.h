// The study's results: one row per evaluated model of a run (its eval/<name>.json), with the
// per-domain test perplexities, their means, parameters total / active, forward FLOPs per
// token, and the training tokens spent to make the model (seed, experts, finetuning or the
// dense baseline's extra training); the best value of every column marked; and a few sentences
// stating the findings in numbers. Written as results.json and results.md in the run folder.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/run/run_dir.h"
#include "btx/util/args.h"

namespace btx {

// Training tokens behind a model of the run (seed, experts/x, merged/y): the seed's, plus every
// expert it uses (its merge.json; upcycling uses none), plus its own training (finetuning, or
// the dense baseline's continued training).
int64_t training_tokens(const RunDir& run, const std::string& model);

// {"train_domains": [...], "novel_domains": [...], "rows": [{"model", "causal", "ppl": {domain:
//  ppl}, "train_mean_ppl", "novel_mean_ppl", "params_total", "params_active",
//  "flops_per_token", "training_tokens", "training_flops" (3 x forward FLOPs per token x tokens,
//  each part of its training -- seed, experts, its own -- at its own model's cost),
//  "train_mean_ppl_ci" / "novel_mean_ppl_ci" (95% bootstrap intervals, analysis/intervals.h),
//  and what the model is (run/model_folder.h ModelFacts):
//  "method", "routed", "learned_routing", "ensemble", "from_experts"}], "best": {column: model},
//  "findings": [sentences]}. The findings find their rows by what the models are: the uniform
//  average, the ensemble of all the run's experts, the dense model matched to the experts'
//  tokens, sparse upcycling, and the best learned-routing model built from the experts.
// `models` are names as given to `btx eval` (seed, merged/btx, ...); each needs its
// eval/<name>.json (an error names the missing ones and the command that makes them).
nlohmann::json study_results(const RunDir& run, const std::vector<std::string>& models);

// Every model evaluated in the run (eval/*.json), as `btx eval` names them: the seed first,
// then the others by name (the experts, then the merged models). No eval/ is an error.
std::vector<std::string> evaluated_models(const RunDir& run);

// The results as a Markdown table (best value per column in bold; non-causal rows marked and
// left out of "best") followed by the findings.
std::string results_markdown(const nlohmann::json& results);

// Writes results.json and results.md into the run folder (each atomically).
void write_results(const RunDir& run, const nlohmann::json& results);

// Two evaluated models of the run compared on the same test windows: b against a, the relative
// difference of their mean perplexities with its 95% paired bootstrap interval, on the training
// and on the novel domains, as sentences. Evaluations without their windows, or scored on other
// windows, are an error saying so.
std::string compare_models(const RunDir& run, const std::string& a, const std::string& b);

// `btx results`'s arguments (util/args.h).
struct ResultsArgs {
  std::string run;
  std::vector<std::string> models;
  std::vector<std::string> compare;  // A,B: B against A, instead of the table
  template <typename V>
  void visit(V& v) {
    v.option("--run", run, "Run directory");
    v.option("--model", models,
             "Models in table order, as given to `btx eval` (default: every eval/*.json, seed "
             "first)");
    v.option("--compare", compare,
             "A,B: B against A on the same test windows (the paired difference of their mean "
             "perplexities and its 95% interval); prints it, writes nothing");
  }
};

}  // namespace btx
