// The building blocks of the Llama-style decoder: RMSNorm, rotary position embedding (RoPE) in
// Hugging Face's layout (the two halves of the head dimension, not interleaved pairs, so exported
// weights need no permutation), causal grouped-query self-attention, and the FFN slot.
// Shapes: B batch, T time, C hidden, H heads, G key/value heads, D head dim, F FFN width.
#pragma once

#include <torch/torch.h>

#include "btx/model/config.h"

namespace btx {

// y = x / sqrt(mean(x^2) + eps) * weight, computed in float32 as HF does.
struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;  // (C)
  double eps;
};
TORCH_MODULE(RMSNorm);

// cos/sin tables for positions [offset, offset+T): each (T, D), frequencies repeated over the two
// halves: theta_i = base^(-2i/D), angle(t, i) = t * theta_i for i < D/2, same again for i >= D/2.
struct RopeTables {
  torch::Tensor cos, sin;  // (T, D)
};
RopeTables rope_tables(int64_t T, int64_t D, double base, int64_t offset = 0,
                       torch::Device device = torch::kCPU);
// The tables for each row's own positions (B, T) (int64): cos and sin (B, 1, T, D), which
// broadcast over the heads of (B, H, T, D).
RopeTables rope_tables_at(const torch::Tensor& positions, int64_t D, double base);
// x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2]).
torch::Tensor apply_rope(const torch::Tensor& x /* (B, H, T, D) */, const RopeTables& rope);

// (T, T) additive mask: 0 on and below the diagonal, -inf above (position t sees <= t).
torch::Tensor causal_mask(int64_t T, torch::Device device = torch::kCPU);

// Causal self-attention with RoPE and optional grouped-query heads (G divides H).
struct AttentionImpl : torch::nn::Module {
  explicit AttentionImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x /* (B, T, C) */, const RopeTables& rope);
  // Incremental decoding: x holds the T positions after the S cached ones (rope for positions
  // [S, S+T)); their keys and values are appended to the cache (B, G, S, D) -> (B, G, S+T, D)
  // and each new position attends to every cached position and the new ones up to itself, or,
  // when `mask` (additive, broadcastable to (B, H, T, S+T)) is given, to what it allows.
  torch::Tensor forward_cached(const torch::Tensor& x, const RopeTables& rope,
                               torch::Tensor& k_cache, torch::Tensor& v_cache,
                               const torch::Tensor& mask = {});
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  int64_t n_head, n_kv_head, head_dim;
};
TORCH_MODULE(Attention);

// The FFN slot of a decoder layer. Dense SwiGLU now; mixtures of experts and SMEAR plug in here
// without touching attention. Each kind registers under its Hugging Face module name.
struct FeedForwardImpl : torch::nn::Module {
  virtual torch::Tensor forward(const torch::Tensor& x /* (B, T, C) */) = 0;
  // Name of this module inside the layer ("mlp" for Llama, "block_sparse_moe" for Mixtral).
  virtual const char* hf_name() const = 0;
  // Parameters a token actually uses (== all of them for a dense FFN).
  virtual int64_t active_params() const;
  // Forward FLOPs per token of this FFN's matrix products at context length `context`
  // (2 per multiply-add of each active weight by default).
  virtual int64_t ffn_flops_per_token(int64_t /*context*/) const { return 2 * active_params(); }
  // Auxiliary training loss of the last forward (an MoE's load balancing), undefined if none.
  virtual torch::Tensor aux_loss() const { return {}; }
  // A policy-gradient loss for routing decisions that are sampled, not differentiated
  // (REINFORCE), given the last training forward's per-token loss (B, T), detached: undefined
  // if none.
  virtual torch::Tensor policy_loss(const torch::Tensor& /*token_nll*/) const { return {}; }
  // The token ids (B, T) of the forward about to run, for FFNs that route on them (hash).
  virtual void set_token_ids(const torch::Tensor& /*ids*/) {}
  // Incremental decoding: x holds new positions whose 0-based index in their own sequence is
  // `positions` (B, T), negative for left padding (a prompt read beside longer ones), which
  // must not enter `state`; `state` carries what the FFN keeps of earlier positions (undefined
  // at the start; SMEAR's prefix sum of its router input). Token-wise FFNs need none.
  virtual torch::Tensor forward_cached(const torch::Tensor& x, const torch::Tensor& /*positions*/,
                                       torch::Tensor& /*state*/) {
    return forward(x);
  }
};

// down(silu(gate(x)) * up(x)).
struct SwiGluMlpImpl : FeedForwardImpl {
  SwiGluMlpImpl(int64_t hidden, int64_t inner);
  torch::Tensor forward(const torch::Tensor& x) override;
  const char* hf_name() const override { return "mlp"; }
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};

}  // namespace btx
