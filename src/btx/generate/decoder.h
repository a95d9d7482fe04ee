// What generation reads from: the next-token scores of a model (dense, MoE, SMEAR) or of BTM's
// ensemble, incrementally with a KV cache where the model allows it (dense, per-token MoE
// routers, SMEAR's prefix-mean router, which carries its running sum), recomputed otherwise
// (sampled or tag routing). The ensemble mixes its experts' next-token distributions under BTM's
// updating posterior p(expert | text so far), which moves as the prompt is read and as tokens
// are produced.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/eval/ensemble.h"
#include "btx/generate/batch_decoder.h"
#include "btx/model/llama.h"
#include "btx/run/model_folder.h"

namespace btx {

// What generation needs of a model: the next-token distribution after a sequence that grows by
// appended tokens between calls (so a decoder may keep state, such as a KV cache, for the part
// it has seen), until reset() starts a new one.
class Decoder {
 public:
  virtual ~Decoder() = default;
  // Scores (V) whose softmax is the next-token distribution after `seq` (logits or log-probs).
  virtual torch::Tensor next_scores(const std::vector<int32_t>& seq) = 0;
  virtual void reset() = 0;
  // Scores (T, V) after every prefix of `seq`: row t is the distribution of the token after
  // seq[..t]. By default next_scores() over growing prefixes from a reset; ends reset.
  virtual torch::Tensor sequence_scores(const std::vector<int32_t>& seq);
  virtual int64_t context() const = 0;  // the longest sequence it reads
  virtual int64_t vocab_size() const = 0;
  // What a generation left worth reporting (the ensemble's posterior over its experts), or null.
  virtual nlohmann::json state() const { return nullptr; }
  // A one-line description: the kind of model and how it decodes.
  virtual std::string describe() const = 0;
  // A decoder of many sequences at once over the same model (BatchDecoder), or null when this
  // one cannot batch (no KV cache, an ensemble).
  virtual std::unique_ptr<BatchDecoder> batch_decoder() const { return nullptr; }
};

// One causal model: with `use_cache` and a model that allows it, only the new tokens run through
// the model (KV cache); otherwise the whole sequence is recomputed for every token. A model that
// routes on the whole sequence, or on a domain label a prompt lacks (tag routing), is an error.
class ModelDecoder : public Decoder {
 public:
  ModelDecoder(CausalLM model, bool use_cache);
  torch::Tensor next_scores(const std::vector<int32_t>& seq) override;
  void reset() override { cache_ = KVCache{}; }
  // One forward pass over the whole sequence (the cache untouched).
  torch::Tensor sequence_scores(const std::vector<int32_t>& seq) override;
  int64_t context() const override { return model_->config().max_sequence(); }
  int64_t vocab_size() const override { return model_->config().vocab_size; }
  std::string describe() const override;
  std::unique_ptr<BatchDecoder> batch_decoder() const override;
  bool cached() const { return cached_; }

 private:
  CausalLM model_;
  bool cached_;
  KVCache cache_;
};

// BTM's ensemble for generation: p(x | prefix) = Σ_j p(x | prefix, j) · p(j | prefix), with the
// posterior p(j | prefix) ∝ Π_s p(x_s | x_<s, j) from a uniform start (the target domain of a
// prompt is unknown, so no cached prior), restricted to its `top_k` largest (0: all) and
// renormalised, as the ensemble's updating prior does in evaluation. With `use_cache` it is an
// EnsembleBatchDecoder of one row (a KV cache per expert, the posterior updated token by token);
// without, the ensemble is recomputed over the whole sequence (EnsembleScorer::log_probs) for
// every token.
class EnsembleDecoder : public Decoder {
 public:
  EnsembleDecoder(std::vector<std::string> names, std::vector<CausalLM> experts, int64_t top_k,
                  bool use_cache);
  torch::Tensor next_scores(const std::vector<int32_t>& seq) override;
  void reset() override;
  int64_t context() const override;
  int64_t vocab_size() const override { return experts_[0]->config().vocab_size; }
  nlohmann::json state() const override;  // {"posterior": {expert: p(expert | text)}}
  std::string describe() const override;
  std::unique_ptr<BatchDecoder> batch_decoder() const override;
  torch::Tensor posterior() const;  // (E) float64, after the last call

 private:
  std::vector<std::string> names_;
  std::vector<CausalLM> experts_;
  int64_t top_k_;
  bool cached_;
  std::unique_ptr<EnsembleScorer> scorer_;       // the recomputing path
  std::unique_ptr<EnsembleBatchDecoder> batch_;  // the cached path: one row
  torch::Tensor evidence_;  // recomputing: (E) float64, Σ log p(x_s | x_<s, j) over the text
  size_t seen_ = 0;
};

// The decoder of a model folder: a checkpoint (dense, MoE, SMEAR) or an ensemble description
// (merge.json, its experts checked against their recorded sha256). Other merged descriptions
// (the per-domain posterior-weighted average) are refused with the reason.
std::unique_ptr<Decoder> open_decoder(const ModelFolder& model, bool use_cache);

}  // namespace btx
