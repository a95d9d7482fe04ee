// A model folder, opened once: the seed, an expert, a merged model or anything `btx eval` scores.
// ModelFolder::open reads what the folder is -- its merge.json, typed (MergeRecord) -- and
// everything else on first use, once: the model config, the weights, the experts a merged
// description names (checked against the sha256 recorded at merge time, so an expert retrained
// since is noticed instead of silently mixed). Copies share what was loaded. What a model is
// (facts, kind, slots, the domains' experts) is decided here from those files, never from the
// folder's name; scorers, decoders and analyses are functions of a ModelFolder.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/eval/ensemble.h"
#include "btx/model/config.h"
#include "btx/model/llama.h"
#include "btx/model/stitch.h"
#include "btx/util/names.h"

namespace btx {

namespace fs = std::filesystem;

// What a model folder holds, merge.json's "kind" (absent: a checkpoint).
enum class ModelKind {
  kCheckpoint,        // model.safetensors + config.json: one dense or routed model
  kEnsemble,          // BTM's ensemble: the experts mixed at every token
  kPosteriorAverage,  // one average per target domain, weighted by its posterior
  kStitched,          // Branch-Train-Stitch: the seed and the experts joined by trained stitches
};
const std::vector<Named<ModelKind>>& names(ModelKind);

// An expert a merged folder was made from, as merge.json records it.
struct RecordedExpert {
  std::string name;
  fs::path dir;        // its folder (merge.json records it relative to the merged folder)
  std::string sha256;  // of its model.safetensors when merged
  int64_t tokens = 0;  // the training tokens it consumed
};

// One expert slot of an MoE merge (merge.json result.moe_experts): who it came from and the
// domains it was trained on.
struct ExpertSlot {
  std::string name;
  std::vector<std::string> domains;
};

// merge.json of a merged folder, typed. A malformed one is an error naming the file.
struct MergeRecord {
  std::string method;
  ModelKind kind = ModelKind::kCheckpoint;
  std::map<std::string, std::string> params;  // the merge's parameters, as given
  std::vector<RecordedExpert> experts;
  std::vector<ExpertSlot> slots;  // MoE merges
  // Its weights come from the trained experts (false: sparse upcycling's copies of the seed's
  // FFN, the dense baseline's continued training).
  bool from_experts = true;
  nlohmann::json result = nlohmann::json::object();  // what the method reported

  static MergeRecord read(const fs::path& file);
};

// What the results table, the report and the findings key on.
struct ModelFacts {
  std::string method;  // the merge method; "" for a plain checkpoint (seed, expert)
  std::map<std::string, std::string> params;  // the merge's parameters (empty if none)
  ModelKind kind = ModelKind::kCheckpoint;
  bool routed = false;         // one MoE or SMEAR model: its FFNs pick or merge experts
  bool learned = false;        // routed by a router trained with the model (not hash, tag)
  bool causal = true;          // position t's prediction reads only tokens <= t
  bool ensemble = false;       // separate models mixed at every token (BTM's ensemble)
  int64_t ensemble_top_k = 0;  // ensemble: experts it keeps per token (0: all)
  bool from_experts = false;   // MergeRecord::from_experts; false for a plain checkpoint
};

class ModelFolder {
 public:
  // Reads merge.json when there is one; a folder that does not exist is an error.
  static ModelFolder open(const fs::path& dir);

  const fs::path& path() const;
  ModelKind kind() const;
  bool is_checkpoint() const { return kind() == ModelKind::kCheckpoint; }
  // A merged folder (merge.json), or a plain checkpoint (seed, expert, imported model).
  bool merged() const;
  const MergeRecord& merge() const;   // merged folders only
  const std::string& method() const;  // "" for a plain checkpoint

  // A checkpoint's config.json and weights, read on first use.
  const ModelConfig& config() const;
  CausalLM model() const;  // the same model for every caller

  // A description's experts (ensemble, posterior average), loaded and checked on first use.
  const std::vector<CausalLM>& experts() const;
  std::vector<std::string> expert_names() const;
  // The options of an ensemble / a posterior average (alpha and prior_windows), from its
  // recorded parameters, checked by their declarations (eval/ensemble.h).
  const EnsembleOptions& ensemble_options() const;
  // A stitched folder's model: its hub (merge.json result.hub, checked against the sha256 it
  // records), its experts and stitches.safetensors, loaded on first use.
  StitchedLM stitched() const;

  ModelFacts facts() const;
  // An MoE merge's expert slots (empty for any other model).
  const std::vector<ExpertSlot>& slots() const;
  // For an MoE merge: each training domain -> the expert slot trained on it (the first slot
  // whose domains include it). Tag routing follows it.
  std::map<std::string, int64_t> domain_experts() const;

 private:
  struct State;
  std::shared_ptr<State> s_;
};

// The tokenizer (tokenizer.json, else tokenizer.model) of the run a model folder belongs to (the
// folder itself, or up to two folders above it); "" when there is none.
fs::path find_run_tokenizer(const fs::path& model_dir);
// The tokenizer of a model: `given` when not empty, else its run's (find_run_tokenizer). An error
// when there is none, saying where it looked and that --tokenizer FILE names one.
fs::path model_tokenizer(const fs::path& model_dir, const fs::path& given);

}  // namespace btx
