// Continuous batching: many sequences decoded together over one model (a shared left-padded KV
// cache) or BTM's ensemble (one such batch per expert, a posterior per row).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/model/kv_cache.h"
#include "btx/model/llama.h"

namespace btx {

// Continuous batching: many sequences decoded together, one row each. Sequences join at any
// step (the prompts of those joining together are read in one forward, left-padded, then join
// the batch) and leave as they finish; each step
// reads one new token of every row at once. Rows are numbered in join order among those kept.
class BatchDecoder {
 public:
  virtual ~BatchDecoder() = default;
  // Reads new sequences' prompts, together (one forward per model, the shorter prompts
  // left-padded); they become the last rows, in order. Returns their next-token scores (n, V).
  virtual torch::Tensor add_rows(const std::vector<std::vector<int32_t>>& prompts) = 0;
  // One new sequence: its next-token scores (V).
  torch::Tensor add(const std::vector<int32_t>& prompt) { return add_rows({prompt})[0]; }
  // Reads one token for every row, in row order: the next-token scores (B, V).
  virtual torch::Tensor step(const std::vector<int32_t>& tokens) = 0;
  // Keeps these rows, in this order.
  virtual void keep(const std::vector<int64_t>& rows) = 0;
  virtual int64_t rows() const = 0;
  virtual int64_t context() const = 0;
  // What a row's generation left worth reporting (Decoder::state), or null.
  virtual nlohmann::json row_state(int64_t /*row*/) const { return nullptr; }
};

// One model with a KV cache: the rows share one left-padded cache (KVCache.pad), so a step is
// one forward pass of B tokens.
class ModelBatchDecoder : public BatchDecoder {
 public:
  explicit ModelBatchDecoder(CausalLM model);  // the model must allow a KV cache
  torch::Tensor add_rows(const std::vector<std::vector<int32_t>>& prompts) override;
  // add_rows(), returning the scores after every prompt position: (n, T, V) for the longest
  // prompt's T, prompt i in the last T_i positions of row i (the first T - T_i are padding).
  torch::Tensor add_rows_all(const std::vector<std::vector<int32_t>>& prompts);
  torch::Tensor step(const std::vector<int32_t>& tokens) override;
  void keep(const std::vector<int64_t>& rows) override { kv_keep_rows(cache_, rows); }
  int64_t rows() const override { return kv_rows(cache_); }
  int64_t context() const override { return model_->config().max_sequence(); }

 private:
  // Reads the prompts, left-padded, into the cache; the logits of every position or the last.
  torch::Tensor prefill(const std::vector<std::vector<int32_t>>& prompts, LogitsAt at);
  CausalLM model_;
  KVCache cache_;
};

// p(expert | text) from the experts' summed log-likelihoods of the text, evidence (..., E)
// float64: Bayes' rule from a uniform start, restricted to the top_k largest (0: all) and
// renormalised.
torch::Tensor ensemble_posterior(const torch::Tensor& evidence, int64_t top_k);
// {"posterior": {expert: p}} for a posterior p (E) over the experts `names`.
nlohmann::json posterior_json(const std::vector<std::string>& names, const torch::Tensor& p);

// BTM's ensemble, batched: each expert decodes the rows with its own ModelBatchDecoder, and each
// row keeps its own posterior over the experts, updated with every token it reads.
class EnsembleBatchDecoder : public BatchDecoder {
 public:
  EnsembleBatchDecoder(std::vector<std::string> names, std::vector<CausalLM> experts,
                       int64_t top_k);
  torch::Tensor add_rows(const std::vector<std::vector<int32_t>>& prompts) override;
  torch::Tensor step(const std::vector<int32_t>& tokens) override;
  void keep(const std::vector<int64_t>& rows) override;
  int64_t rows() const override { return evidence_.defined() ? evidence_.size(0) : 0; }
  int64_t context() const override;
  nlohmann::json row_state(int64_t row) const override;  // {"posterior": {expert: p}}
  torch::Tensor posterior(int64_t row) const;            // (E) float64

 private:
  // The mixture's scores (B, V) from each row's posterior and its experts' last log-probs.
  torch::Tensor mixture() const;
  std::vector<std::string> names_;
  int64_t top_k_;
  std::vector<ModelBatchDecoder> experts_;
  torch::Tensor evidence_;  // (B, E) float64: Σ log p(x_s | x_<s, j) over each row's tokens
  torch::Tensor last_lp_;   // (B, E, V) float64: each expert's log-probs after each row's last
};

}  // namespace btx
