// Text generation from a model (dense, MoE, SMEAR) or BTM's ensemble of experts: incremental
// decoding with a KV cache where the model allows it (dense, per-token MoE routers, SMEAR's
// prefix-mean router, which carries its running sum), full recomputation otherwise (sampled or
// tag routing), greedy or sampled (temperature, top-k, top-p, a seed), with stop strings, a
// token budget and streaming of the text as it is produced.
// The ensemble mixes its experts' next-token distributions under BTM's updating posterior
// p(expert | text so far), which moves as the prompt is read and as tokens are produced.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "btx/data/tokenizer.h"
#include "btx/eval/ensemble.h"
#include "btx/model/llama.h"

namespace btx {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy (argmax)
  int64_t top_k = 0;         // keep the k most probable tokens (0: all)
  double top_p = 1.0;        // keep the smallest set whose probability reaches p
  uint64_t seed = 0;
};

// The token to emit after next-token logits (V) under the options; `u` is a uniform draw in
// [0, 1) (unused when greedy). Checks the options (an error names the bad one).
int64_t choose_token(const torch::Tensor& logits, const SamplingOptions& o, double u);
void validate_sampling(const SamplingOptions& o);

class BatchDecoder;

// What generation needs of a model: the next-token distribution after a sequence that grows by
// appended tokens between calls (so a decoder may keep state, such as a KV cache, for the part
// it has seen), until reset() starts a new one.
class Decoder {
 public:
  virtual ~Decoder() = default;
  // Scores (V) whose softmax is the next-token distribution after `seq` (logits or log-probs).
  virtual torch::Tensor next_scores(const std::vector<int32_t>& seq) = 0;
  virtual void reset() = 0;
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
  int64_t context() const override { return model_->config().max_position_embeddings; }
  int64_t vocab_size() const override { return model_->config().vocab_size; }
  std::string describe() const override;
  std::unique_ptr<BatchDecoder> batch_decoder() const override;
  bool cached() const { return cached_; }

 private:
  CausalLM model_;
  bool cached_;
  KVCache cache_;
};

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
  int64_t context() const override { return model_->config().max_position_embeddings; }

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
std::unique_ptr<Decoder> open_decoder(const std::filesystem::path& dir, bool use_cache);

// The number of bytes at the end of `s` that begin a UTF-8 character not finished yet (0-3):
// streamed text holds them back, since a byte-level token may be half of a character.
size_t utf8_incomplete_tail(std::string_view s);

struct GenerateOptions {
  int64_t max_tokens = 64;
  SamplingOptions sampling;
  std::vector<std::string> stop;  // generation ends before the first of these in the output
  bool use_cache = true;          // false: recompute the whole prefix for every token
  bool stop_at_eos = true;
  // Checked before every token: when it reads true, generation ends ("cancelled").
  const std::atomic<bool>* cancel = nullptr;
};

struct GenerateResult {
  std::string text;             // the generated text (without the prompt, cut at a stop string)
  std::vector<int32_t> tokens;  // the generated tokens
  // "length" (max_tokens or the context), "stop", "eos", "cancelled"
  std::string finish_reason;
};

// Checks a request before any work: options valid, the prompt non-empty and shorter than the
// model's context (room for one new token). The error names the bad value.
void validate_request(int64_t context, const std::vector<int32_t>& prompt,
                      const GenerateOptions& o);

// One generation, token by token: the sampling draws, the text, stop strings, the budget, and
// the text that is final. generate() drives one with a Decoder; the server's batch drives
// several at once, one row each.
class Generation {
 public:
  // `prompt` is checked (validate_request); `on_text` receives the text as it becomes final.
  Generation(const Tokenizer& tok, std::vector<int32_t> prompt, GenerateOptions o, int64_t context,
             std::function<void(const std::string&)> on_text = {});
  // Whether another token is wanted: within max_tokens and the context, not stopped, not
  // cancelled.
  bool wants_more();
  // Chooses the next token from its scores (V) and takes it in.
  void take(const torch::Tensor& scores);
  // Prompt and generated tokens so far.
  const std::vector<int32_t>& sequence() const { return all_; }
  // Ends it: releases the text held back and returns the result.
  GenerateResult finish();

 private:
  void flush(bool all_of_it);
  const Tokenizer& tok_;
  std::vector<int32_t> all_;
  GenerateOptions o_;
  int64_t context_;
  std::function<void(const std::string&)> on_text_;
  std::mt19937_64 rng_;
  GenerateResult r_;
  size_t emitted_ = 0;  // bytes of r_.text given to on_text
  bool ended_ = false;
};

// Generates from `prompt` (token ids), starting the decoder afresh. `on_text` receives the text
// as it becomes final (text that could still turn into a stop string is held back until it
// cannot). A prompt that does not fit the model's context, or an empty one, is an error.
// (`use_cache` is the decoder's: it is chosen when the decoder is made.)
GenerateResult generate(Decoder& d, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& o,
                        const std::function<void(const std::string&)>& on_text = {});
// The same for one model, decoded as o.use_cache says.
GenerateResult generate(CausalLM& model, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& o,
                        const std::function<void(const std::string&)>& on_text = {});

}  // namespace btx
