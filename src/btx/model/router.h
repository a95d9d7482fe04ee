// Every way btx sends tokens to experts, in one place: an enum of router kinds, one table of
// what each kind is (causal or not, cacheable, learned or fixed, experts per token, what HF
// Mixtral computes of it, how it trains), and the routing functions of the MoE kinds. Every
// other file asks the table, never the router's name. Adding a router kind is one enum value,
// one table row (router.cpp), its routing function, and one test.
// The name of a kind is the `router_mode` of config.json (a string there, so that configs stay
// readable and HF-like); ModelConfig::router() turns it into the kind's traits.
// Shapes: N tokens (B*T), E experts, k experts per token, C hidden.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "btx/model/config.h"

namespace btx {

enum class RouterKind {
  // MoE (model_type "mixtral"): discrete experts per token (moe.h).
  kTopK,       // the k largest router logits, softmax over them (k = 1: Switch)
  kSoft,       // every expert, weighted by the full softmax
  kSample,     // per sequence: the top-k of the mean logits (BTX's sample-level routing)
  kHash,       // a fixed hash of the token id (Roller et al. 2021's hash layers)
  kTag,        // the sequence's domain label (DEMix's oracle)
  kGumbel,     // top-1, straight-through Gumbel-softmax in training (Jang et al. 2017)
  kReinforce,  // top-1 sampled in training, REINFORCE with a learned baseline
  // SMEAR (model_type "smear"): one FFN merged with the router's weights (smear.h).
  kPrefix,    // the mean of each prefix routes its position (causal)
  kSequence,  // the mean of the whole sequence routes it (not causal)
};

// How many experts' FFNs a token runs.
enum class ExpertsPerToken {
  kTopK,    // num_experts_per_tok
  kAll,     // every expert
  kOne,     // one
  kMerged,  // one FFN whose weights are the experts' router-weighted average (SMEAR)
};

// How the router learns when the model trains.
enum class RouterTraining {
  kGates,            // through the gates of the chosen experts (backpropagation)
  kStraightThrough,  // Gumbel-softmax, straight through the sampled choice
  kPolicyGradient,   // REINFORCE on the sampled choice (FeedForwardImpl::policy_loss)
  kMergeWeights,     // through the merge weights (SMEAR)
  kFixed,            // it does not: the routing is a function of the token or the label
};

// What Hugging Face's Mixtral computes of a router, when it is exported.
enum class HfRouting {
  kTopK,     // top-k as is
  kAllTopE,  // soft routing: top-E, i.e. every expert with the full softmax
  kTopOne,   // what gumbel and REINFORCE compute at inference: the argmax
  kNone,     // not a Mixtral router: export refuses it
};

struct RouterTraits {
  RouterKind kind;
  const char* name;      // router_mode in config.json
  ModelType model_type;  // the FFN family: MoE (kMixtral) or SMEAR
  bool causal;           // position t's routing reads only tokens <= t
  bool cacheable;        // decodes incrementally with a KV cache
  bool learned;          // the router is trained (false: hash, tag)
  bool needs_labels;     // each sequence's domain label must be given (force_experts)
  ExpertsPerToken experts;
  RouterTraining training;
  HfRouting hf;
  const char* summary;  // one line: what it does
  // Whether it takes part in the load-balancing and z losses (discrete learned MoE routers).
  bool balanced() const { return learned && experts != ExpertsPerToken::kMerged; }
};

// Every router kind, in enum order.
const std::vector<RouterTraits>& router_table();
const RouterTraits& router_traits(RouterKind kind);
// The kind named `router_mode` among those of `model_type`; an unknown one is an error naming
// `where` and listing the kinds of that model type.
const RouterTraits& router_traits(ModelType model_type, const std::string& router_mode,
                                  const std::string& where);
// The names of the router kinds of `model_type`, in table order; with `learned_only`, those
// of learned routers (the choices of a merge's --router).
std::vector<std::string> router_names(ModelType model_type, bool learned_only = false);
// "name (summary) | ..." of the same kinds: the help of a --router parameter.
std::string router_help(ModelType model_type, bool learned_only = false);

// ---- the routing functions of the MoE kinds --------------------------------------------------

// The routing decision for N tokens: which k experts each uses and with which weights.
struct Routing {
  torch::Tensor logits;   // (N, E) router logits
  torch::Tensor probs;    // (N, E) full softmax
  torch::Tensor experts;  // (N, k) chosen expert ids (int64)
  torch::Tensor weights;  // (N, k) their gates (sum to 1 per token)
};

// Everything a routing function may read for one forward.
struct RoutingInput {
  torch::Tensor logits;     // (N, E), fp32
  int64_t B = 0, T = 0;     // N = B * T tokens of B sequences
  int64_t k = 1;            // num_experts_per_tok
  torch::Tensor token_ids;  // (B, T) the forward's tokens (hash routing)
  bool training = false;
};
// The routing of a kind of the MoE family (its table row's function).
Routing route(const RouterTraits& router, const RoutingInput& in);

// Top-k of `logits` (N, E) per row, softmax over the kept ones.
Routing route_top_k(const torch::Tensor& logits, int64_t k);
// Null experts (Kilian et al. 2026, "Improving MoE Compute Efficiency by Composing Weight and
// Data Sparsity", arXiv:2601.15370): the E real logits (N, E) and one null logit (N, 1)
// repeated `null_slots` times (M) make E + M slots; the top-k of them are chosen and softmaxed
// as by route_top_k. A chosen null slot (id >= E) computes nothing: its gate is 0, and the real
// experts' gates are renormalised to sum to 1 (k > 1; with k = 1 the one gate is 1 as in
// route_top_k), all 0 when only null slots were chosen. So a token uses 0..k experts. `probs`
// and `logits` span all E + M slots: load balancing over them sets the share of null choices.
Routing route_top_k_null(const torch::Tensor& logits, const torch::Tensor& null_logit,
                         int64_t null_slots, int64_t k);
// Every expert, weighted by the full softmax (k = E).
Routing route_soft(const torch::Tensor& logits);
// Expert (ids * 2654435761 mod 2^32) mod E of each token id (B*T), gate 1.
Routing route_hash(const torch::Tensor& logits, const torch::Tensor& ids, int64_t num_experts);
// Per sequence: top-k of the mean logits of each of B sequences of T tokens (logits (B*T, E)),
// the same experts and gates for all its tokens.
Routing route_sample(const torch::Tensor& logits, int64_t B, int64_t T, int64_t k);
// Straight-through Gumbel-softmax top-1 (noise from torch's global generator; tau the softmax
// temperature).
Routing route_gumbel(const torch::Tensor& logits, double tau = 1.0);
// Top-1 sampled from softmax(logits).
Routing route_sampled(const torch::Tensor& logits);
// Every token to the expert given for it, gate 1: experts (B, T) int64, checked by the caller
// (RoutedFfnImpl::forced_ids).
Routing route_forced(const torch::Tensor& logits, const torch::Tensor& experts);

// α · E · Σ_i f_i P_i: f_i = fraction of tokens whose chosen experts include i, P_i = mean
// probability of i. Equals α · k when routing is perfectly balanced.
torch::Tensor load_balancing_loss(const Routing& r, int64_t num_experts, double alpha);
// β · mean over tokens of logsumexp(logits)².
torch::Tensor router_z_loss(const torch::Tensor& logits, double beta);

}  // namespace btx
