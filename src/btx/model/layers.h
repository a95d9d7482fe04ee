// The building blocks of the Llama-style decoder: RMSNorm, rotary position embedding (RoPE) in
// Hugging Face's layout (the two halves of the head dimension, not interleaved pairs, so exported
// weights need no permutation), causal grouped-query self-attention, and the FFN slot.
// Shapes: B batch, T time, C hidden, H heads, G key/value heads, D head dim, F FFN width.
#pragma once

#include <torch/torch.h>

#include "btx/model/config.h"
#include "btx/model/kv_cache.h"

namespace btx {

// y = x / sqrt(mean(x^2) + eps) * weight, computed in float32 as HF does.
struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;  // (C)
  double eps;
};
TORCH_MODULE(RMSNorm);

// The rotary frequencies of a model: theta_i = base^(-2i/D) for i < D/2, then rescaled as its
// rope_scaling says ("linear": / factor; "llama3": wavelengths above original / low_freq_factor
// divided by factor, below original / high_freq_factor kept, a linear ramp in between, as HF's
// _compute_llama3_parameters).
struct RopeSpec {
  int64_t dim = 0;  // D
  double base = 10000.0;
  std::string scaling;  // "" | linear | llama3
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_context = 8192;
  static RopeSpec of(const ModelConfig& c);
  torch::Tensor inv_freq() const;  // (D/2) float64
};

// cos/sin tables for positions [offset, offset+T): each (T, D), frequencies repeated over the two
// halves: angle(t, i) = t * theta_i for i < D/2, same again for i >= D/2.
struct RopeTables {
  torch::Tensor cos, sin;  // (T, D)
};
RopeTables rope_tables(int64_t T, const RopeSpec& spec, int64_t offset = 0,
                       torch::Device device = torch::kCPU);
inline RopeTables rope_tables(int64_t T, int64_t D, double base, int64_t offset = 0,
                              torch::Device device = torch::kCPU) {
  RopeSpec spec;
  spec.dim = D;
  spec.base = base;
  return rope_tables(T, spec, offset, device);
}
// The tables for each row's own positions (B, T) (int64): cos and sin (B, 1, T, D), which
// broadcast over the heads of (B, H, T, D).
RopeTables rope_tables_at(const torch::Tensor& positions, const RopeSpec& spec);
// x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2]).
torch::Tensor apply_rope(const torch::Tensor& x /* (B, H, T, D) */, const RopeTables& rope);

// (T, T) additive mask: 0 on and below the diagonal, -inf above (position t sees <= t).
torch::Tensor causal_mask(int64_t T, torch::Device device = torch::kCPU);

// The attention slot of a decoder layer, registered as "self_attn": one attention
// (AttentionImpl) or BAM's mixture of attention experts (attention_experts.h).
struct AttentionSlotImpl : torch::nn::Module {
  virtual torch::Tensor forward(const torch::Tensor& x /* (B, T, C) */, const RopeTables& rope,
                                LayerCache* cache = nullptr, const torch::Tensor& mask = {}) = 0;
  // Forward FLOPs per token of the attention scores and the weighted values at context length
  // `context` (2 * T * C for one attention), besides its projections' weights.
  virtual int64_t score_flops_per_token(int64_t context) const = 0;
};

// Causal self-attention with RoPE and optional grouped-query heads (G divides H): one forward
// for training and decoding, one place for the q/k/v projections, RoPE and the grouped-query
// repeat. x holds T positions (rope: theirs). Without a cache they are the whole sequence,
// attended causally. With one, they come after its S positions: their keys and values are
// appended to it, (B, G, S, D) -> (B, G, S+T, D), and each new position attends to every cached
// position and the new ones up to itself, or, when `mask` (additive, broadcastable to
// (B, H, T, S+T)) is given, to what it allows. An empty cache without a mask is the plain case.
// What the projections are follows the config's base_model_type: biases on q/k/v (qwen2,
// attention_bias) and o (attention_bias), and qwen3's RMSNorm of each query and key head.
struct AttentionImpl : AttentionSlotImpl {
  explicit AttentionImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x /* (B, T, C) */, const RopeTables& rope,
                        LayerCache* cache = nullptr, const torch::Tensor& mask = {}) override;
  int64_t score_flops_per_token(int64_t context) const override {
    return 2 * context * n_head * head_dim;
  }
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // qwen3: over each head's D, before RoPE
  int64_t n_head, n_kv_head, head_dim;
};
TORCH_MODULE(Attention);

// What AttentionImpl does after its projections, for any number of heads: RoPE on q (B, H, T, D)
// and k (B, G, T, D), k and v appended to `cache` (as AttentionImpl::forward says), each
// key/value head shared by H/G query heads, and the attention -> (B, H, T, D).
torch::Tensor attend(torch::Tensor q, torch::Tensor k, torch::Tensor v, const RopeTables& rope,
                     LayerCache* cache, const torch::Tensor& mask);

// The number of parameters of a module (its weights' elements).
int64_t count_params(const torch::nn::Module& m);

// What one forward gives every FFN besides its input, set once per forward (not per layer).
struct FfnContext {
  torch::Tensor token_ids;  // (B, T) the tokens of this forward (hash routing reads them)
  // Incremental decoding: each new token's 0-based index in its own sequence (B, T), negative
  // for left padding (a prompt read beside longer ones); undefined in a full forward.
  torch::Tensor positions;
};

// The FFN slot of a decoder layer: dense SwiGLU, mixtures of experts and SMEAR plug in here
// without touching attention. Each kind registers under its Hugging Face module name. What only
// routed FFNs have (routers, their losses) is RoutedFfnImpl's (moe.h).
struct FeedForwardImpl : torch::nn::Module {
  virtual torch::Tensor forward(const torch::Tensor& x /* (B, T, C) */, const FfnContext& ctx) = 0;
  // A forward that needs no context (e.g. a layer run on its own).
  torch::Tensor forward(const torch::Tensor& x) { return forward(x, FfnContext{}); }
  // Name of this module inside the layer ("mlp" for Llama, "block_sparse_moe" for Mixtral).
  virtual const char* hf_name() const = 0;
  // Parameters a token actually uses (== all of them for a dense FFN).
  virtual int64_t active_params() const;
  // Forward FLOPs per token of this FFN's matrix products at context length `context`
  // (2 per multiply-add of each active weight by default).
  virtual int64_t ffn_flops_per_token(int64_t /*context*/) const { return 2 * active_params(); }
  // Incremental decoding: x holds new positions (ctx.positions; padding must not enter
  // `state`); `state` carries what the FFN keeps of earlier positions (undefined at the start;
  // SMEAR's prefix sum of its router input). Token-wise FFNs need none.
  virtual torch::Tensor forward_cached(const torch::Tensor& x, const FfnContext& ctx,
                                       torch::Tensor& /*state*/) {
    return forward(x, ctx);
  }
};

// down(silu(gate(x)) * up(x)).
struct SwiGluMlpImpl : FeedForwardImpl {
  SwiGluMlpImpl(int64_t hidden, int64_t inner);
  using FeedForwardImpl::forward;
  torch::Tensor forward(const torch::Tensor& x, const FfnContext& ctx) override;
  const char* hf_name() const override { return "mlp"; }
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};

}  // namespace btx
