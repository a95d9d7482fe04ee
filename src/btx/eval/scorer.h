// What evaluation needs of a model: next-token losses for token windows, and its cost. A dense
// checkpoint is one Scorer; ensembles and routed models (later issues) are others, so `btx eval`
// measures every method the same way.
#pragma once

#include <torch/torch.h>

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
  int64_t max_context() const override { return model_->config().max_position_embeddings; }

 private:
  CausalLM model_;
};

}  // namespace btx
