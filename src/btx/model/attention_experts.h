// BAM's mixture of attention experts (Zhang et al. 2024, Branch-Attend-Mix, arXiv:2408.08274):
// every expert's self-attention kept whole beside the others, mixed per token by a soft router
// on the hidden state entering attention (after input_layernorm):
//   y_t = Σ_e g_e(x_t) · o_e(attention_e(x)_t),   g(x_t) = softmax(W x_t)   (E experts, W (E, C)).
// Soft, as in BAM: every expert runs on every token, so nothing is dropped and no load balancing
// is needed. Names: model.layers.i.self_attn.experts.j.{q,k,v,o}_proj (with their biases and
// q_norm / k_norm where the base model has them) and self_attn.gate (btx's own layout: not a
// Hugging Face architecture).
//
// The experts run as one attention of E·H heads: their q, k, v projections concatenated, the
// KV cache holds every expert's keys and values side by side in the head dimension (B, E·G, S, D),
// so caching, padding and continuous batching work unchanged; the gates weight each expert's
// heads before one output projection of the experts' o_proj concatenated.
#pragma once

#include <torch/torch.h>

#include "btx/model/config.h"
#include "btx/model/layers.h"

namespace btx {

struct AttentionExpertsImpl : AttentionSlotImpl {
  explicit AttentionExpertsImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x /* (B, T, C) */, const RopeTables& rope,
                        LayerCache* cache = nullptr, const torch::Tensor& mask = {}) override;
  int64_t score_flops_per_token(int64_t context) const override;
  // The last forward's gates (B, T, E), detached (for analysis).
  const torch::Tensor& last_gates() const { return last_gates_; }

  torch::nn::ModuleList experts;    // E AttentionImpl
  torch::nn::Linear gate{nullptr};  // router, (E, C) without bias
  int64_t num_experts;

 private:
  torch::Tensor last_gates_;
};
TORCH_MODULE(AttentionExperts);

// The attention slot the config names: a mixture of experts when num_attention_experts > 0,
// else one attention.
std::shared_ptr<AttentionSlotImpl> config_attention(const ModelConfig& c);

// Hugging Face-style names of an attention weight, p one of "q" | "k" | "v" | "o": a plain
// layer's self_attn.p_proj, an attention expert's, and the attention router's.
std::string attention_name(int64_t layer, const std::string& p);
std::string attention_expert_name(int64_t layer, int64_t expert, const std::string& p);
// Any tensor of an attention expert by its name inside self_attn ("q_proj.bias", "k_norm.weight").
std::string attention_expert_tensor(int64_t layer, int64_t expert, const std::string& tail);
std::string attention_router_name(int64_t layer);

}  // namespace btx
