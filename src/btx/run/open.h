// Any model btx can evaluate, as a Scorer: a checkpoint folder (seed, expert, dense merges), or a
// merged description that is loaded with its experts (the ensemble, the per-domain posterior
// average). Experts named by a description are checked against the sha256 recorded at merge
// time, so an expert retrained since is noticed instead of silently mixed.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "btx/eval/ensemble.h"
#include "btx/eval/scorer.h"
#include "btx/model/llama.h"
#include "btx/util/fs.h"

namespace btx {

std::unique_ptr<Scorer> open_scorer(const std::filesystem::path& dir);

// The experts a merged description names (its merge.json `experts`, paths relative to `dir`),
// loaded and checked against the sha256 recorded at merge time: a missing or retrained expert is
// an error naming it. Returns their names and models, in the description's order.
std::pair<std::vector<std::string>, std::vector<CausalLM>> load_described_experts(
    const std::filesystem::path& dir, const nlohmann::json& manifest);

// The ensemble's options recorded in an ensemble description's merge.json (prior, top-k, alpha,
// prior windows); a malformed value is an error naming the file.
EnsembleOptions described_ensemble_options(const std::filesystem::path& dir,
                                           const nlohmann::json& manifest);

// merge.json of a merged folder, or null for a plain checkpoint folder.
nlohmann::json read_merge_manifest(const std::filesystem::path& dir);

// What a model folder is, from its merge.json and config.json, never from its folder's name:
// what the results table, the report and the findings key on.
struct ModelFacts {
  std::string method;          // the merge method; "" for a plain checkpoint (seed, expert)
  nlohmann::json params;       // the merge's resolved parameters (object; empty if none)
  std::string kind;            // "checkpoint", "ensemble" or "posterior-average"
  bool routed = false;         // one MoE or SMEAR model: its FFNs pick or merge experts
  bool learned = false;        // routed by a router trained with the model (not hash, tag)
  bool causal = true;          // position t's prediction reads only tokens <= t
  bool ensemble = false;       // separate models mixed at every token (BTM's ensemble)
  int64_t ensemble_top_k = 0;  // ensemble: experts it keeps per token (0: all)
  // Its weights come from the trained experts (false: the seed, an expert, sparse upcycling's
  // copies of the seed's FFN, the dense baseline's continued training).
  bool from_experts = false;
};
ModelFacts model_facts(const std::filesystem::path& dir);

// For an MoE merge: each training domain -> the expert slot trained on it (the first slot whose
// domains include it), from merge.json's record of the slots. Tag routing follows it.
std::map<std::string, int64_t> domain_experts(const nlohmann::json& manifest);

// The tokenizer.model of the run a model folder belongs to (the folder itself, or up to two
// folders above it); "" when there is none.
fs::path find_run_tokenizer(const fs::path& model_dir);
// The tokenizer of a model: `given` when not empty, else its run's (find_run_tokenizer). An error
// when there is none, saying where it looked and that --tokenizer FILE names one.
fs::path model_tokenizer(const fs::path& model_dir, const fs::path& given);

}  // namespace btx
