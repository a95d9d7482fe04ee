// Which part of a merge costs what: model grafting. For each expert and each training domain it
// trained on, every hybrid of the expert and a reference model (the uniform average of the
// run's experts, as the `average` and `btx` merges make it, or the seed) that takes each
// parameter group -- the embedding (with the LM head), attention, norms, the FFN -- from one or
// the other (the reference may be any dense model of the run, e.g. the `fisher` merge), scored on
// the domain's test text. The 2^4 hybrids give each group's exact Shapley share of the loss gap
// between the reference and the expert: how much of what averaging loses each group accounts for,
// whatever order the groups are given back in.
//
// Two hybrids are rows of the study in all but finetuning: the reference with the expert's FFN
// is the tag-routed `btx` MoE before finetuning (each domain to its own expert, the rest
// averaged), and with its FFN and attention it is BAM's merge under the same oracle routing.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/run/run_dir.h"

namespace btx {

// The parameter groups a hybrid takes from the expert or the reference, in bit order.
const std::vector<std::string>& graft_groups();
// The group of a parameter (its HF name), an index into graft_groups(); -1 for a router.
int param_group(const std::string& param);
// The same for a dense model's parameter; a router is an error (grafting takes dense
// checkpoints).
int graft_group(const std::string& param);

// Exact Shapley values of n players from the value of every coalition: value[mask] with bit g of
// mask set when player g is in. Returns φ (n), Σφ = value[all] - value[none].
std::vector<double> shapley_values(const std::vector<double>& value, int n);

struct GraftOptions {
  // "average" (the uniform mean of the run's experts, computed here), "seed", or a dense model of
  // the run (merged/fisher, say)
  std::string reference = "average";
  int64_t max_tokens = 0;  // test tokens per domain (0: the whole test split)
};

// {"reference", "groups": [...], "tokens": per domain, "domains": [{"domain", "expert",
//   "hybrids": [{"from_expert": [groups], "loss", "ppl"}] (2^G, by mask),
//   "reference_ppl", "expert_ppl", "gap": loss(reference) - loss(expert) (nats),
//   "shapley": {group: nats}, "share": {group: fraction of the gap}}],
//  "mean": {"reference_ppl", "expert_ppl", "gap", "shapley", "share",
//           "hybrids": [{"from_expert", "ppl"}]} (ppl: geometric means over the domains)}.
// Needs the run's experts finished and dense (mode all or ffn).
nlohmann::json graft_analysis(const Run& run, const GraftOptions& opts);

// The analysis as readable tables: per domain, the reference, the expert, each single group
// given back and each group taken away, and the Shapley shares.
std::string format_graft(const nlohmann::json& result);

// run/analysis/graft-<reference's eval name>.json
fs::path graft_path(const RunDir& run, const std::string& reference);

}  // namespace btx
