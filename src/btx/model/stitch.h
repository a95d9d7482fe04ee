// Branch-Train-Stitch (Zhang et al. 2025, "BTS: Harmonizing Specialized Experts into a Generalist
// LLM", arXiv:2502.00075). The seed is a hub and the N trained experts run beside it, all frozen;
// after every s-th layer (and after the last) a stitch joins them:
//   experts into hub   h ← g_0 · h + Σ_i g_i · P_i e_i,   g = softmax(G h + b) over N+1 slots,
//                      P_i a C x C projection of expert i's residual stream into the hub's;
//   hub into experts   e_i ← e_i + σ(a_i · h + c_i) · Q_i h   (each expert reads the new hub
//                      state through its own projection and sigmoid gate),
// the second one skipped after the last layer, where nothing reads the experts any more. The hub's
// final norm and LM head make the prediction; only the stitches train.
//
// Initialisation: P_i = I (experts branched from one seed share its residual basis), G = 0, b = 0
// (the hub and the experts mixed uniformly), Q_i = 0, a_i = 0, c_i = 0 (the experts start as they
// were trained). Every model runs every layer for every token: the cost per token is N+1 models'
// plus the stitches', as for the ensemble.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "btx/model/llama.h"

namespace btx {

// The layers (1-based counts) after which a stitch sits for `layers` layers and a stitch every
// `every`: every, 2·every, ... and always the last layer. every >= 1.
std::vector<int64_t> stitch_points(int64_t layers, int64_t every);

// One stitch point between a hub of width C and N experts of the same width.
struct StitchImpl : torch::nn::Module {
  StitchImpl(int64_t hidden, int64_t experts, bool into_experts);
  // h (B, T, C), e (N, B, T, C) -> the hub's new state (B, T, C); `gates` (optional) gets the
  // softmax weights (B, T, N+1), slot 0 the hub's.
  torch::Tensor into_hub(const torch::Tensor& h, const torch::Tensor& e,
                         torch::Tensor* gates = nullptr);
  // The experts' new states (N, B, T, C) given the hub's h (B, T, C); only when into_experts.
  torch::Tensor into_experts(const torch::Tensor& h, const torch::Tensor& e);
  // Its parameters: each is one multiply-add per token.
  int64_t params() const;

  torch::nn::Linear gate{nullptr};       // C -> N+1
  torch::Tensor project;                 // (N, C, C): P_i, applied as e_i @ P_i^T
  torch::nn::Linear back_gate{nullptr};  // C -> N (null at the last point)
  torch::Tensor back;                    // (N, C, C): Q_i (undefined at the last point)
};
TORCH_MODULE(Stitch);

struct StitchedLMImpl : torch::nn::Module {
  // The hub (the seed) and the experts: dense models of one architecture (an error otherwise),
  // frozen here (requires_grad off). Stitches start as described above.
  StitchedLMImpl(CausalLM hub, std::vector<CausalLM> experts, int64_t every);
  // Logits (B, T, V) of the hub after the stitched forward. `gates` (optional) gets, per stitch
  // point, the softmax weights (B, T, N+1).
  torch::Tensor forward(const torch::Tensor& ids, std::vector<torch::Tensor>* gates = nullptr);
  // The trainable parameters, named "stitches.<k>.<name>" as model.safetensors stores them.
  std::vector<std::pair<std::string, torch::Tensor>> stitch_parameters() const;
  int64_t num_stitch_params() const;
  // Every weight it holds: the hub's, the experts', the stitches'.
  int64_t num_params() const;
  // Forward FLOPs per token (the convention of forward_flops_per_token): N+1 models without the
  // experts' LM heads (unused), plus 2 per stitch multiply-add.
  int64_t flops_per_token(int64_t context) const;
  int64_t every() const { return every_; }
  const std::vector<int64_t>& points() const { return points_; }
  int64_t num_experts() const { return static_cast<int64_t>(experts.size()); }

  CausalLM hub{nullptr};
  std::vector<CausalLM> experts;
  torch::nn::ModuleList stitches;

 private:
  int64_t every_;
  std::vector<int64_t> points_;
};
TORCH_MODULE(StitchedLM);

// Next-token NLL (B, T) of tokens (B, T+1) under a stitched model, in fp32, on the model's device
// (the tokens are moved there); `gates` (optional) as in StitchedLMImpl::forward.
torch::Tensor stitched_token_nll(StitchedLM& model, const torch::Tensor& tokens,
                                 std::vector<torch::Tensor>* gates = nullptr);

}  // namespace btx
