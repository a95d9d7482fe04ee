// What evaluation needs of a model: next-token losses for token windows, and its cost. A dense
// checkpoint is one Scorer; ensembles and routed models are others, so `btx eval` measures every
// method the same way.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "btx/model/llama.h"

namespace btx {

class Scorer {
 public:
  virtual ~Scorer() = default;
  // Negative log-likelihood of tokens[:, 1:] given the prefix: (B, T) for tokens (B, T+1).
  virtual torch::Tensor token_nll(const torch::Tensor& tokens) = 0;
  virtual int64_t params_total() const = 0;
  virtual int64_t params_active() const = 0;
  virtual int64_t flops_per_token(int64_t context) const = 0;
  virtual int64_t max_context() const = 0;
  // False when a position's loss depends on tokens after it (sequence-level routing).
  virtual bool causal() const { return true; }

  // Held-out text of the domain about to be scored: up to `windows` windows (n, T+1) that are
  // never among the scored ones (a training domain's validation split; for novel text, chunks
  // set aside). Empty (0 rows) when the domain has none.
  using Heldout = std::function<torch::Tensor(int64_t windows)>;
  // Called before each domain's windows are scored. Methods that adapt to the target domain from
  // a little of its held-out text (BTM's cached prior, the posterior-weighted average) do so here;
  // the others ignore it.
  virtual void begin_domain(const std::string& /*domain*/, const Heldout& /*heldout*/) {}
  // What the model chose for the current domain, recorded in the evaluation JSON (e.g. the
  // ensemble's weights over its experts); null when there is nothing to say.
  virtual nlohmann::json domain_info() const { return nullptr; }
};

class ModelScorer : public Scorer {
 public:
  explicit ModelScorer(CausalLM model) : model_(std::move(model)) { model_->eval(); }
  torch::Tensor token_nll(const torch::Tensor& tokens) override;
  int64_t params_total() const override { return model_->num_params(); }
  int64_t params_active() const override { return model_->num_active_params(); }
  int64_t flops_per_token(int64_t context) const override {
    return forward_flops_per_token(model_, context);
  }
  int64_t max_context() const override { return model_->config().max_sequence(); }
  bool causal() const override { return model_->config().is_causal(); }
  CausalLM& model() { return model_; }

 private:
  CausalLM model_;
};

}  // namespace btx
