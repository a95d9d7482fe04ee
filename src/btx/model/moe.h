// The mixture-of-experts FFN of Branch-Train-MiX (Sukhbaatar et al. 2024, arXiv:2403.07816), in
// Hugging Face Mixtral's layout: N SwiGLU experts (w1 = gate, w3 = up, w2 = down) and a linear
// router `gate` on the hidden state entering the FFN. Routing modes (ModelConfig::router_mode;
// their traits and routing functions are router.h's):
//   top-k   keep the k largest router logits per token, softmax over them (k = 1: Switch,
//           with the chosen expert's probability as a straight-through gate: 1 forward, its
//           gradient backward, since a softmax over one logit would teach the router nothing);
//   soft    every expert, weighted by the full softmax;
//   sample  one choice per sequence: the top-k of the mean of its tokens' logits (BTX's
//           sample-level routing; not causal, since early tokens see the later ones' logits);
//   hash    a fixed hash of the token id picks one expert (Roller et al. 2021's hash layers);
//   tag     the sequence's domain label picks one expert (force_experts; DEMix's oracle);
//   gumbel  top-1 with the straight-through Gumbel-softmax estimator (Jang et al. 2017): in
//           training the argmax of softmax(logits + Gumbel noise) is used with gate
//           1 + y_i - stopgrad(y_i), so the router learns through y; in evaluation the argmax
//           of the logits;
//   reinforce  top-1 sampled from the router's softmax in training (the argmax in evaluation),
//           gate 1; the router learns by REINFORCE: policy_loss adds mean_t (l_t - b_t) ·
//           log p(e_t) with l_t the token's loss and b_t a learned baseline (the batch's mean
//           loss plus a linear map of the detached FFN input), fitted by
//           kBaselineLossWeight · mean_t (b_t - l_t)². The two are SMEAR's gradient-estimator
//           baselines (Muqeeth et al. 2023), token-level here so that they stay causal.
// hash and tag do not learn: no load-balancing loss.
// Null experts (num_null_experts M > 0, top-k only; router.h's route_top_k_null): a second
// router row `null_gate` gives one null logit, repeated M times beside the N real logits; a
// token whose top-k includes null slots runs fewer experts (0..k), and load balancing over all
// N + M slots holds the share of real choices near N / (N + M), the data sparsity ρ. The last
// routing keeps the null slots as one column (id N, probability their sum); in evaluation the
// layer counts the real experts it ran, and active_params() reports that measured mean.
// Context-aware router input (router_context; MetaMoE): the router (and the null row) reads
// (1-λ)·h_t + λ·c_t with c_t the mean of h over positions <= t, λ = sigmoid(context_mix), a
// learned scalar ("context_mix"); incremental decoding carries the prefix sum of h.
// Output Σ_i g_i · expert_i(h). Dispatch groups the (token, expert) pairs by expert (a stable
// sort by expert id), runs one matrix product per expert on its tokens only, and adds the
// weighted results back with one index_add.
// Load balancing (Switch, Fedus et al. 2021, arXiv:2101.03961): α · N · Σ_i f_i · P_i with f_i
// the fraction of tokens whose chosen experts include i and P_i the mean router probability of
// i; plus an optional router z-loss (ST-MoE): β · mean_t logsumexp(logits_t)². Both are kept by
// the layer after each forward; CausalLM::aux_loss() sums them over layers.
#pragma once

#include <torch/torch.h>

#include <optional>

#include "btx/model/config.h"
#include "btx/model/layers.h"
#include "btx/model/llama.h"
#include "btx/model/router.h"

namespace btx {

// One Mixtral expert: w2(silu(w1 x) * w3 x).
struct MoeExpertImpl : torch::nn::Module {
  MoeExpertImpl(int64_t hidden, int64_t inner);
  torch::Tensor forward(const torch::Tensor& x /* (n, C) */);
  torch::nn::Linear w1{nullptr}, w2{nullptr}, w3{nullptr};
};
TORCH_MODULE(MoeExpert);

// How dispatch_experts multiplies the tokens sorted by expert with the experts' weights:
//  - kLoop: one product per expert on its contiguous slice (few large kernels; the CPU's best);
//  - kBatched: the slices padded to the longest, one batched product (bmm) per projection;
//  - kGrouped: one grouped product per projection without padding (at::_grouped_mm, LibTorch
//    2.8+ on CUDA in bf16; elsewhere it falls back to kBatched);
//  - kAuto: kGrouped on a CUDA device, kLoop on the CPU.
// All give the same outputs and gradients (tests/model/moe_test.cpp, tests/gpu).
enum class ExpertProducts { kAuto, kLoop, kBatched, kGrouped };

// Whether this LibTorch has at::_grouped_mm (a build-time fact: 2.8 and later).
bool grouped_mm_compiled();

// Σ_j weights[:, j] · expert_{experts[:, j]}(x) for x (N, C), grouped by expert. With
// `null_slots`, pairs whose id is not a real expert (>= E) are skipped.
torch::Tensor dispatch_experts(const torch::nn::ModuleList& experts, const torch::Tensor& x,
                               const Routing& r, bool null_slots = false,
                               ExpertProducts how = ExpertProducts::kAuto);

// What MoE and SMEAR layers share: N Mixtral experts and a linear router on the FFN input, a
// way to force every token of a sequence to one expert (BTX's centroid router init, tag
// routing), a record of the FFN inputs (centroids), and the last forward's routing (analysis).
struct RoutedFfnImpl : FeedForwardImpl {
  explicit RoutedFfnImpl(const ModelConfig& c);
  // Sends every token of sequence b to expert experts[b] with gate 1, whatever the router says
  // (experts: (B) or (1) for all sequences; undefined: the router decides again). For BTX's
  // centroid router init and the tag-routing baseline.
  void force_experts(const torch::Tensor& experts) { forced_ = experts; }
  // While true, forward adds its FFN inputs h (the normalised hidden states, N x C) to
  // input_sum (C), their number to input_count and, with record_gram too, hᵀh to input_gram
  // (C x C), all in float64: the statistics of the centroid and ridge router inits.
  bool record_inputs = false;
  bool record_gram = false;
  torch::Tensor input_sum;
  torch::Tensor input_gram;
  int64_t input_count = 0;
  // The last forward's routing (for analysis and usage logs), detached.
  const std::optional<Routing>& last_routing() const { return last_; }
  // Fraction of the last forward's tokens whose chosen experts include each expert: (E).
  torch::Tensor last_usage() const;
  // Auxiliary training loss of the last forward (an MoE's load balancing), undefined if none.
  virtual torch::Tensor aux_loss() const { return {}; }
  // A policy-gradient loss for routing decisions that are sampled, not differentiated
  // (REINFORCE), given the last training forward's per-token loss (B, T), detached: undefined
  // if none.
  virtual torch::Tensor policy_loss(const torch::Tensor& /*token_nll*/) const { return {}; }

  torch::nn::Linear gate{nullptr};  // router, (E, C) without bias
  torch::nn::ModuleList experts;
  int64_t num_experts;

 protected:
  // Adds h (N, C) to input_sum / input_count (and input_gram) when record_inputs is on.
  void record(const torch::Tensor& h);
  // The forced expert of every position of B sequences of T, (B, T) int64, checked against
  // the batch and the number of experts.
  torch::Tensor forced_ids(int64_t B, int64_t T) const;

  std::optional<Routing> last_;
  torch::Tensor forced_;
};

struct MoeFfnImpl : RoutedFfnImpl {
  // The weight of the REINFORCE baseline's regression loss: small, so that its gradient (token
  // losses spread over several nats) does not dominate gradient clipping.
  static constexpr double kBaselineLossWeight = 0.01;

  explicit MoeFfnImpl(const ModelConfig& c);
  using FeedForwardImpl::forward;
  torch::Tensor forward(const torch::Tensor& x /* (B, T, C) */, const FfnContext& ctx) override;
  // With a context-aware router: the new positions after `state`, the prefix sum of h so far.
  torch::Tensor forward_cached(const torch::Tensor& x, const FfnContext& ctx,
                               torch::Tensor& state) override;
  const char* hf_name() const override { return "block_sparse_moe"; }
  int64_t active_params() const override;
  torch::Tensor aux_loss() const override { return aux_loss_; }
  torch::Tensor policy_loss(const torch::Tensor& token_nll) const override;

  // The same routing applied by hand: (B*T, E) router logits -> the mode's Routing, or the
  // forced experts when set; `token_ids` (B, T) for hash routing.
  Routing route(const torch::Tensor& logits, int64_t B, int64_t T,
                const torch::Tensor& token_ids = {}) const;

  // reinforce only: the learned baseline (1, C) without bias, on the detached FFN input
  // ("baseline" in the checkpoint; not part of Mixtral's layout).
  torch::nn::Linear baseline{nullptr};
  // Null experts: the null logit's router row ("null_gate", (1, C)); null without them.
  torch::nn::Linear null_gate{nullptr};
  int64_t num_null = 0;
  // Context-aware router input: the logit of λ ((1)); undefined without it.
  torch::Tensor context_mix;
  // The real experts run per token, measured over the evaluation forwards so far (null
  // experts only; nullopt before any).
  std::optional<double> measured_experts_per_token() const;
  int64_t top_k;
  const RouterTraits* router;  // the config's router kind
  double aux_coef, z_coef;

 private:
  torch::Tensor aux_loss_;
  // reinforce: log-probability of each token's sampled expert and its baseline, (N).
  torch::Tensor chosen_logp_, baseline_pred_;
  int64_t real_pairs_ = 0, routed_tokens_ = 0;  // null experts, evaluation forwards
  // The layer's work on x (B, T, C) whose router reads `router_input` (B, T, C).
  torch::Tensor mix(const torch::Tensor& x, const torch::Tensor& router_input,
                    const FfnContext& ctx);
  // (1-λ)·x + λ·(prefix sums / counts), the context-aware router input.
  torch::Tensor context_input(const torch::Tensor& x, const torch::Tensor& sums,
                              const torch::Tensor& counts) const;
};
TORCH_MODULE(MoeFfn);

// Hugging Face names of FFN weights, w one of "w1" | "w2" | "w3" (Mixtral's gate, down and up
// projections): a dense layer's mlp.{gate,down,up}_proj, a Mixtral expert's and a router's.
std::string dense_ffn_name(int64_t layer, const std::string& w);
std::string moe_ffn_name(int64_t layer, int64_t expert, const std::string& w);
std::string moe_router_name(int64_t layer);

// The routed layers (MoE or SMEAR) of a model, in order (empty for a dense model).
std::vector<RoutedFfnImpl*> routed_layers(const CausalLM& model);
// force_experts on every routed layer of the model.
void force_experts(const CausalLM& model, const torch::Tensor& experts);

// What each routed layer's FFN sees on several datasets: per layer l and dataset i, the sum of
// its FFN inputs (C) and, with grams, their Gram matrix hᵀh (C x C), in float64, and per dataset
// the number of tokens. Dataset i is token windows (B, >= seq_len), read seq_len at a time with
// every token sent to expert forced[i] (the statistics of the centroid and ridge router inits).
struct FfnInputStatistics {
  std::vector<std::vector<torch::Tensor>> sums;   // [layer][dataset]
  std::vector<std::vector<torch::Tensor>> grams;  // [layer][dataset]; empty without grams
  std::vector<int64_t> counts;                    // [dataset]
};
FfnInputStatistics ffn_input_statistics(CausalLM model, const std::vector<torch::Tensor>& data,
                                        const std::vector<int64_t>& forced, int64_t seq_len,
                                        bool grams);

}  // namespace btx
