// SMEAR, soft merging of experts with adaptive routing (Muqeeth, Liu, Raffel 2023,
// arXiv:2306.03745): instead of sending a token to discrete experts, average the experts'
// parameters with the router's probabilities and run the input through that one merged expert.
// End to end differentiable, no load balancing, the cost of about one expert per example.
//
// The layer holds N SwiGLU experts and a linear router, under the MoE layer's names but inside its
// own module: model.layers.i.smear.gate.weight (E, C) and model.layers.i.smear.experts.j.{w1,w2,
// w3}.weight (Mixtral's w1 = gate, w3 = up, w2 = down). The router's input is the mean of the
// hidden states entering the FFN, RMS-normalised (a mean of normalised vectors shrinks as they
// disagree; normalising keeps the router's logits on one scale whatever the length):
//   prefix    (model_type "smear", router_mode "prefix", the default) the mean over positions
//             <= t, so position t has its own merge weights and sees nothing after it: causal,
//             usable for generation and honest perplexity. Computed in the equivalent linear
//             form (merging is linear in the weights): silu(Σ_i p_ti W1_i h_t) * (Σ_i p_ti W3_i
//             h_t) from one product with every expert's W1 and W3 stacked, then Σ_i p_ti W2_i g_t
//             as one product with the stacked W2 on p_t ⊗ g_t. That costs what soft routing costs
//             (every expert on every token) but never materialises per-position weights;
//             smear_merge_per_position is the direct form (measured in bench/smear_layer).
//   sequence  the mean over the whole sequence (SMEAR's example-level routing): one merged
//             expert per sequence, W_b = Σ_i p_bi W_i by one batched contraction, then one
//             SwiGLU. Cheap, but position t's weights depend on later tokens: NOT causal; its
//             perplexity is reported as such.
// Expert dropout (training only): each probability is zeroed with probability
// expert_dropout (per sequence and layer) and the rest renormalised; a sequence whose every
// expert was dropped keeps its probabilities.
// force_experts (RoutedFfnImpl's) makes the merge weights one-hot: centroid router init and tag
// routing use it exactly as with the MoE layer.
#pragma once

#include <torch/torch.h>

#include "btx/model/moe.h"

namespace btx {

// The stacked weights of a layer's experts: w1 and w3 (E, F, C), w2 (E, C, F).
struct StackedExperts {
  torch::Tensor w1, w2, w3;
};
StackedExperts stack_experts(const torch::nn::ModuleList& experts);

// One merged SwiGLU per sequence: x (B, T, C), p (B, E) -> (B, T, C).
torch::Tensor smear_merge_per_sequence(const torch::Tensor& x, const torch::Tensor& p,
                                       const StackedExperts& w);
// One merged SwiGLU per position, in the linear form: x (N, C), p (N, E) -> (N, C).
torch::Tensor smear_mix_per_position(const torch::Tensor& x, const torch::Tensor& p,
                                     const StackedExperts& w);
// The same by materialising each position's merged weights, `chunk` positions at a time (the
// direct form: a reference and a benchmark, not used by the model).
torch::Tensor smear_merge_per_position(const torch::Tensor& x, const torch::Tensor& p,
                                       const StackedExperts& w, int64_t chunk = 64);

// The router input: RMS-normalised mean of x (B, T, C) over each prefix (causal: (B, T, C)) or
// over the sequence ((B, 1, C)).
torch::Tensor smear_router_input(const torch::Tensor& x, bool causal, double eps);

// Zeroes each entry of p with probability `rate` and renormalises: one draw per row of a (N, E)
// p, one per sequence for a (B, T, E) p (every position of a sequence drops the same experts).
// Rows left all zero keep their original values.
torch::Tensor expert_dropout(const torch::Tensor& p, double rate);

struct SmearFfnImpl : RoutedFfnImpl {
  explicit SmearFfnImpl(const ModelConfig& c);
  using FeedForwardImpl::forward;
  torch::Tensor forward(const torch::Tensor& x /* (B, T, C) */, const FfnContext& ctx) override;
  const char* hf_name() const override { return "smear"; }
  // One merged expert and the router.
  int64_t active_params() const override;
  // prefix: every expert's matrix products on every token (the linear form); sequence: one
  // expert's, plus merging the weights once per sequence of `context` tokens.
  int64_t ffn_flops_per_token(int64_t context) const override;
  // The merge weights of x: (B, T, E) for prefix, (B, 1, E) for sequence (no dropout).
  torch::Tensor merge_weights(const torch::Tensor& x);
  // The merge weights of router inputs (B, T, C) (one per position; T = 1: per sequence):
  // the router's softmax, or one-hot on the forced experts.
  torch::Tensor weights_of(const torch::Tensor& router_input);
  // Incremental decoding (prefix router only): `state` (B, C) is the sum of the router inputs
  // seen so far in each row, ctx.positions (B, T) the new tokens' indices; the prefix means
  // continue from it, so the result equals forward() over the whole sequence.
  torch::Tensor forward_cached(const torch::Tensor& x, const FfnContext& ctx,
                               torch::Tensor& state) override;
  // The experts' weights stacked; in eval mode kept until a weight changes (checked by data
  // pointer and version), so decoding and evaluation do not copy them on every forward.
  const StackedExperts& stacked();

  bool causal;
  double dropout_rate;
  double eps;

 private:
  StackedExperts stacked_;
  std::vector<std::pair<const void*, int64_t>> stacked_key_;  // (data_ptr, version) per weight
};
TORCH_MODULE(SmearFfn);

}  // namespace btx
