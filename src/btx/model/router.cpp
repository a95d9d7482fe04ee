#include "btx/model/router.h"

#include <fmt/format.h>

#include "btx/util/error.h"

namespace btx {

namespace {
using E = ExpertsPerToken;
using R = RouterTraining;
using H = HfRouting;
using M = ModelType;

// One row per kind, in enum order (router_traits(kind) indexes it).
const std::vector<RouterTraits> kRouters = {
    // kind, name, model_type, causal, cacheable, learned, needs_labels, experts, training, hf
    {RouterKind::kTopK, "top-k", M::kMixtral, true, true, true, false, E::kTopK, R::kGates,
     H::kTopK, "the k largest router logits per token, softmax over them"},
    {RouterKind::kSoft, "soft", M::kMixtral, true, true, true, false, E::kAll, R::kGates,
     H::kAllTopE, "every expert, weighted by the router's full softmax"},
    {RouterKind::kSample, "sample", M::kMixtral, false, false, true, false, E::kTopK, R::kGates,
     H::kNone, "one choice per sequence: the top-k of the mean of its tokens' logits"},
    {RouterKind::kHash, "hash", M::kMixtral, true, true, false, false, E::kOne, R::kFixed, H::kNone,
     "a fixed hash of the token id picks one expert"},
    {RouterKind::kTag, "tag", M::kMixtral, true, false, false, true, E::kOne, R::kFixed, H::kNone,
     "the sequence's domain label picks one expert (an oracle)"},
    {RouterKind::kGumbel, "gumbel", M::kMixtral, true, true, true, false, E::kOne,
     R::kStraightThrough, H::kTopOne, "top-1 by straight-through Gumbel-softmax"},
    {RouterKind::kReinforce, "reinforce", M::kMixtral, true, true, true, false, E::kOne,
     R::kPolicyGradient, H::kTopOne, "top-1 sampled in training, learned by REINFORCE"},
    {RouterKind::kPrefix, "prefix", M::kSmear, true, true, true, false, E::kMerged,
     R::kMergeWeights, H::kNone, "SMEAR: the mean of each prefix sets its position's merge"},
    {RouterKind::kSequence, "sequence", M::kSmear, false, false, true, false, E::kMerged,
     R::kMergeWeights, H::kNone, "SMEAR: the mean of the whole sequence sets its merge"},
};

// The gate of one chosen expert taken straight through: 1 in the forward pass, the gradient of
// its probability p in the backward pass.
torch::Tensor straight_through_one(const torch::Tensor& p) {
  return p - p.detach() + 1.0;
}

// A routing of `logits` whose choice is still to be made: the logits and their full softmax.
Routing routing_of(const torch::Tensor& logits) {
  Routing r;
  r.logits = logits;
  r.probs = torch::softmax(logits, -1);
  return r;
}
}  // namespace

const std::vector<RouterTraits>& router_table() {
  return kRouters;
}

const RouterTraits& router_traits(RouterKind kind) {
  const auto& row = kRouters.at(static_cast<size_t>(kind));
  BTX_CHECK(row.kind == kind, "router table out of enum order at {}", row.name);
  return row;
}

const RouterTraits& router_traits(ModelType model_type, const std::string& router_mode,
                                  const std::string& where) {
  for (const auto& r : kRouters) {
    if (r.model_type == model_type && r.name == router_mode) return r;
  }
  const auto names = router_names(model_type);
  BTX_CHECK(!names.empty(), "{}: model_type '{}' has no router", where, name_of(model_type));
  fail("{}: {}router_mode '{}' is not one of {}", where,
       model_type == ModelType::kSmear ? "SMEAR " : "", router_mode, fmt::join(names, ", "));
}

namespace {
// The rows of `model_type` (only the learned ones with `learned_only`), in table order.
std::vector<const RouterTraits*> rows_of(ModelType model_type, bool learned_only) {
  std::vector<const RouterTraits*> out;
  for (const auto& r : kRouters) {
    if (r.model_type == model_type && (r.learned || !learned_only)) out.push_back(&r);
  }
  return out;
}
}  // namespace

std::vector<std::string> router_names(ModelType model_type, bool learned_only) {
  std::vector<std::string> out;
  for (const auto* r : rows_of(model_type, learned_only)) out.push_back(r->name);
  return out;
}

std::string router_help(ModelType model_type, bool learned_only) {
  std::vector<std::string> parts;
  for (const auto* r : rows_of(model_type, learned_only)) {
    parts.push_back(fmt::format("{} ({}{})", r->name, r->summary, r->causal ? "" : "; not causal"));
  }
  return fmt::format("{}", fmt::join(parts, " | "));
}

Routing route(const RouterTraits& router, const RoutingInput& in) {
  switch (router.kind) {
    case RouterKind::kTopK:
      return route_top_k(in.logits, in.k);
    case RouterKind::kSoft:
      return route_soft(in.logits);
    case RouterKind::kSample:
      return route_sample(in.logits, in.B, in.T, in.k);
    case RouterKind::kHash:
      return route_hash(in.logits, in.token_ids, in.logits.size(1));
    case RouterKind::kTag:
      fail("tag routing needs each sequence's domain label (force_experts) before the forward");
    case RouterKind::kGumbel:  // the argmax of the logits at inference
      return in.training ? route_gumbel(in.logits) : route_top_k(in.logits, in.k);
    case RouterKind::kReinforce:
      return in.training ? route_sampled(in.logits) : route_top_k(in.logits, in.k);
    case RouterKind::kPrefix:
    case RouterKind::kSequence:
      break;
  }
  fail("router_mode '{}' merges experts (SMEAR) instead of routing tokens to them", router.name);
}

Routing route_top_k(const torch::Tensor& logits, int64_t k) {
  BTX_CHECK(k >= 1 && k <= logits.size(1), "top-k routing with k = {} of {} experts", k,
            logits.size(1));
  Routing r = routing_of(logits);
  auto top = logits.topk(k, -1);
  r.experts = std::get<1>(top);
  if (k == 1) {
    // A softmax over one logit is 1 with zero gradient: the router would learn nothing from
    // the loss. Switch's gate is the chosen expert's probability; it is taken straight-through
    // here, 1 in the forward pass (what HF Mixtral computes for k = 1, so exports stay exact)
    // and the probability's gradient in the backward pass.
    r.weights = straight_through_one(r.probs.gather(1, r.experts));
  } else {
    r.weights = torch::softmax(std::get<0>(top), -1);
  }
  return r;
}

Routing route_top_k_null(const torch::Tensor& logits, const torch::Tensor& null_logit,
                         int64_t null_slots, int64_t k) {
  BTX_CHECK(null_slots >= 1, "null-expert routing with {} null slots", null_slots);
  BTX_CHECK(
      null_logit.dim() == 2 && null_logit.size(0) == logits.size(0) && null_logit.size(1) == 1,
      "null-expert routing: the null logit must be (tokens, 1) for {} tokens", logits.size(0));
  const int64_t E = logits.size(1);
  Routing r = route_top_k(torch::cat({logits, null_logit.expand({-1, null_slots})}, 1), k);
  const auto real = r.experts.lt(E).to(r.weights.dtype());
  auto w = r.weights * real;
  // Null pairs are never dispatched, so the gradient through a token with no real expert
  // (sum 0, floored) is zero.
  if (k > 1) w = w / w.sum(1, /*keepdim=*/true).clamp_min(1e-12);
  r.weights = w;
  return r;
}

Routing route_soft(const torch::Tensor& logits) {
  Routing r = routing_of(logits);
  const int64_t N = logits.size(0), E = logits.size(1);
  r.experts = torch::arange(E, logits.options().dtype(torch::kInt64)).expand({N, E});
  r.weights = r.probs;
  return r;
}

Routing route_hash(const torch::Tensor& logits, const torch::Tensor& ids, int64_t num_experts) {
  BTX_CHECK(ids.defined() && ids.numel() == logits.size(0),
            "hash routing needs the token ids of the forward ({} tokens)", logits.size(0));
  Routing r = routing_of(logits);
  auto h = (ids.reshape({-1}).to(torch::kInt64) * static_cast<int64_t>(2654435761))
               .remainder(int64_t{1} << 32);
  r.experts = h.remainder(num_experts).unsqueeze(1);
  r.weights = torch::ones({logits.size(0), 1}, logits.options());
  return r;
}

Routing route_sample(const torch::Tensor& logits, int64_t B, int64_t T, int64_t k) {
  const int64_t E = logits.size(1);
  auto seq = route_top_k(logits.view({B, T, E}).mean(1), k);  // (B, k)
  Routing r = routing_of(logits);
  r.experts = seq.experts.unsqueeze(1).expand({B, T, k}).reshape({B * T, k});
  r.weights = seq.weights.unsqueeze(1).expand({B, T, k}).reshape({B * T, k});
  return r;
}

Routing route_gumbel(const torch::Tensor& logits, double tau) {
  Routing r = routing_of(logits);
  auto u = torch::rand_like(logits).clamp(1e-10, 1.0 - 1e-7);
  auto y = torch::softmax((logits - torch::log(-torch::log(u))) / tau, -1);
  r.experts = y.argmax(-1, /*keepdim=*/true);
  r.weights = straight_through_one(y.gather(1, r.experts));
  return r;
}

Routing route_sampled(const torch::Tensor& logits) {
  Routing r = routing_of(logits);
  r.experts = torch::multinomial(r.probs.detach(), 1);
  r.weights = torch::ones({logits.size(0), 1}, logits.options());
  return r;
}

Routing route_forced(const torch::Tensor& logits, const torch::Tensor& experts) {
  const int64_t N = experts.numel();
  Routing r = routing_of(logits);
  r.experts = experts.to(logits.device()).reshape({N, 1});
  r.weights = torch::ones({N, 1}, logits.options());
  return r;
}

torch::Tensor load_balancing_loss(const Routing& r, int64_t num_experts, double alpha) {
  const int64_t N = r.probs.size(0);
  // f_i: tokens whose chosen experts include i, over all tokens (no gradient: a count).
  auto counts = torch::zeros({num_experts}, r.probs.options())
                    .index_add_(0, r.experts.reshape({-1}),
                                torch::ones({r.experts.numel()}, r.probs.options()));
  auto f = counts / static_cast<double>(N);
  auto P = r.probs.mean(0);
  return alpha * static_cast<double>(num_experts) * (f * P).sum();
}

torch::Tensor router_z_loss(const torch::Tensor& logits, double beta) {
  return beta * torch::logsumexp(logits, -1).pow(2).mean();
}

}  // namespace btx
