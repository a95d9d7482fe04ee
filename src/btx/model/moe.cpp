#include "btx/model/moe.h"

#include "btx/util/error.h"

namespace btx {

namespace {
torch::nn::Linear linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

// A straight-through gate for one chosen expert: 1 in the forward pass, the gradient of its
// probability p in the backward pass.
torch::Tensor straight_through_one(const torch::Tensor& p) {
  return p - p.detach() + 1.0;
}
}  // namespace

MoeExpertImpl::MoeExpertImpl(int64_t hidden, int64_t inner) {
  w1 = register_module("w1", linear(hidden, inner));
  w2 = register_module("w2", linear(inner, hidden));
  w3 = register_module("w3", linear(hidden, inner));
}

torch::Tensor MoeExpertImpl::forward(const torch::Tensor& x) {
  return w2(torch::silu(w1(x)) * w3(x));
}

Routing route_top_k(const torch::Tensor& logits, int64_t k) {
  BTX_CHECK(k >= 1 && k <= logits.size(1), "top-k routing with k = {} of {} experts", k,
            logits.size(1));
  Routing r;
  r.logits = logits;
  r.probs = torch::softmax(logits, -1);
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

Routing route_soft(const torch::Tensor& logits) {
  Routing r;
  r.logits = logits;
  r.probs = torch::softmax(logits, -1);
  const int64_t N = logits.size(0), E = logits.size(1);
  r.experts = torch::arange(E, logits.options().dtype(torch::kInt64)).expand({N, E});
  r.weights = r.probs;
  return r;
}

Routing route_hash(const torch::Tensor& logits, const torch::Tensor& ids, int64_t num_experts) {
  BTX_CHECK(ids.defined() && ids.numel() == logits.size(0),
            "hash routing needs the token ids of the forward ({} tokens)", logits.size(0));
  Routing r;
  r.logits = logits;
  r.probs = torch::softmax(logits, -1);
  auto h = (ids.reshape({-1}).to(torch::kInt64) * static_cast<int64_t>(2654435761))
               .remainder(int64_t{1} << 32);
  r.experts = h.remainder(num_experts).unsqueeze(1);
  r.weights = torch::ones({logits.size(0), 1}, logits.options());
  return r;
}

Routing route_sample(const torch::Tensor& logits, int64_t B, int64_t T, int64_t k) {
  const int64_t E = logits.size(1);
  auto seq = route_top_k(logits.view({B, T, E}).mean(1), k);  // (B, k)
  Routing r;
  r.logits = logits;
  r.probs = torch::softmax(logits, -1);
  r.experts = seq.experts.unsqueeze(1).expand({B, T, k}).reshape({B * T, k});
  r.weights = seq.weights.unsqueeze(1).expand({B, T, k}).reshape({B * T, k});
  return r;
}

Routing route_gumbel(const torch::Tensor& logits, double tau) {
  Routing r;
  r.logits = logits;
  r.probs = torch::softmax(logits, -1);
  auto u = torch::rand_like(logits).clamp(1e-10, 1.0 - 1e-7);
  auto y = torch::softmax((logits - torch::log(-torch::log(u))) / tau, -1);
  r.experts = y.argmax(-1, /*keepdim=*/true);
  r.weights = straight_through_one(y.gather(1, r.experts));
  return r;
}

Routing route_sampled(const torch::Tensor& logits) {
  Routing r;
  r.logits = logits;
  r.probs = torch::softmax(logits, -1);
  r.experts = torch::multinomial(r.probs.detach(), 1);
  r.weights = torch::ones({logits.size(0), 1}, logits.options());
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

torch::Tensor dispatch_experts(const torch::nn::ModuleList& experts, const torch::Tensor& x,
                               const Routing& r) {
  const int64_t N = x.size(0), k = r.experts.size(1), E = static_cast<int64_t>(experts->size());
  // Every (token, slot) pair, grouped by expert: a stable sort keeps token order within one.
  auto flat = r.experts.reshape({-1});  // (N*k)
  auto order = std::get<1>(flat.sort(/*stable=*/true, 0, false));
  auto token = order.div(k, "floor");  // the token of each sorted pair
  auto gate = r.weights.reshape({-1}).index_select(0, order).unsqueeze(1).to(x.dtype());
  auto counts = torch::bincount(flat, {}, E).to(torch::kCPU);
  const auto* n = counts.data_ptr<int64_t>();
  auto xs = x.index_select(0, token);  // (N*k, C) tokens in expert order
  std::vector<torch::Tensor> ys;
  int64_t start = 0;
  for (int64_t e = 0; e < E; ++e) {
    if (n[e] == 0) continue;
    ys.push_back(experts->ptr(e)->as<MoeExpertImpl>()->forward(xs.narrow(0, start, n[e])));
    start += n[e];
  }
  auto y = torch::cat(ys) * gate;
  return torch::zeros({N, x.size(1)}, x.options()).index_add_(0, token, y);
}

MoeFfnImpl::MoeFfnImpl(const ModelConfig& c)
    : num_experts(c.num_local_experts),
      top_k(c.num_experts_per_tok),
      mode(c.router_mode),
      aux_coef(c.router_aux_loss_coef),
      z_coef(c.router_z_loss_coef) {
  c.validate("MoE layer config");
  gate = register_module("gate", linear(c.hidden_size, num_experts));
  experts = register_module("experts", torch::nn::ModuleList());
  for (int64_t e = 0; e < num_experts; ++e) {
    experts->push_back(MoeExpert(c.hidden_size, c.intermediate_size));
  }
  if (mode == "reinforce") {
    baseline = register_module("baseline", linear(c.hidden_size, 1));
    torch::NoGradGuard no_grad;
    baseline->weight.zero_();
  }
}

void MoeFfnImpl::record(const torch::Tensor& h) {
  if (!record_inputs) return;
  auto sum = h.detach().to(torch::kFloat64).sum(0);
  input_sum = input_sum.defined() ? input_sum + sum : sum;
  input_count += h.size(0);
}

torch::Tensor MoeFfnImpl::forced_ids(int64_t B, int64_t T) const {
  BTX_CHECK(forced_.numel() == 1 || forced_.numel() == B, "forced experts: {} ids for {} sequences",
            forced_.numel(), B);
  BTX_CHECK(forced_.min().item<int64_t>() >= 0 && forced_.max().item<int64_t>() < num_experts,
            "forced expert id out of range [0, {})", num_experts);
  return forced_.to(torch::kInt64).reshape({-1, 1}).expand({B, T});
}

Routing MoeFfnImpl::route(const torch::Tensor& logits, int64_t B, int64_t T) const {
  if (forced_.defined()) {
    Routing r;
    r.logits = logits;
    r.probs = torch::softmax(logits, -1);
    r.experts = forced_ids(B, T).to(logits.device()).reshape({B * T, 1});
    r.weights = torch::ones({B * T, 1}, logits.options());
    return r;
  }
  BTX_CHECK(mode != "tag",
            "tag routing needs each sequence's domain label (force_experts) before the forward");
  if (mode == "hash") return route_hash(logits, ids_, num_experts);
  if (mode == "soft") return route_soft(logits);
  if (mode == "sample") return route_sample(logits, B, T, top_k);
  if (mode == "gumbel" && is_training()) return route_gumbel(logits);
  if (mode == "reinforce" && is_training()) return route_sampled(logits);
  return route_top_k(logits, top_k);
}

torch::Tensor MoeFfnImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  auto h = x.reshape({B * T, C});
  record(h);
  Routing r = route(gate(h).to(torch::kFloat32), B, T);  // fp32 also under bf16 autocast
  auto out = dispatch_experts(experts, h, r);
  if (mode == "reinforce" && is_training() && !forced_.defined()) {
    chosen_logp_ = torch::log_softmax(r.logits, -1).gather(1, r.experts).squeeze(1);
    baseline_pred_ = baseline(h.detach()).squeeze(1);
  } else {
    chosen_logp_ = baseline_pred_ = torch::Tensor();
  }
  if (is_training() && mode != "hash" && mode != "tag") {
    aux_loss_ = load_balancing_loss(r, num_experts, aux_coef);
    if (z_coef > 0) aux_loss_ = aux_loss_ + router_z_loss(r.logits, z_coef);
  } else {
    aux_loss_ = torch::Tensor();
  }
  last_ = Routing{r.logits.detach(), r.probs.detach(), r.experts, r.weights.detach()};
  return out.view({B, T, C});
}

torch::Tensor MoeFfnImpl::policy_loss(const torch::Tensor& token_nll) const {
  if (!chosen_logp_.defined()) return {};
  auto l = token_nll.detach().reshape({-1}).to(chosen_logp_.dtype());
  BTX_CHECK(l.numel() == chosen_logp_.numel(), "REINFORCE: {} token losses for {} routed tokens",
            l.numel(), chosen_logp_.numel());
  // The baseline: the batch's mean loss plus the learned correction for this token.
  auto b = baseline_pred_ + l.mean();
  auto advantage = (l - b).detach();
  return (advantage * chosen_logp_).mean() + kBaselineLossWeight * (b - l).pow(2).mean();
}

torch::Tensor MoeFfnImpl::last_usage() const {
  BTX_CHECK(last_.has_value(), "no forward pass yet");
  const auto& r = *last_;
  auto counts = torch::zeros({num_experts}, torch::kFloat64)
                    .index_add_(0, r.experts.reshape({-1}).cpu(),
                                torch::ones({r.experts.numel()}, torch::kFloat64));
  return counts / static_cast<double>(r.experts.size(0));
}

int64_t MoeFfnImpl::active_params() const {
  const int64_t per_expert = experts->ptr(0)->as<MoeExpertImpl>()->w1->weight.numel() * 3;
  const int64_t used = mode == "soft" ? num_experts : (mode == "hash" || mode == "tag") ? 1 : top_k;
  return gate->weight.numel() + used * per_expert;
}

std::vector<MoeFfnImpl*> moe_layers(const CausalLM& model) {
  std::vector<MoeFfnImpl*> out;
  for (const auto& layer : *model->model->layers) {
    auto* moe = dynamic_cast<MoeFfnImpl*>(layer->as<DecoderLayerImpl>()->ffn.get());
    if (moe != nullptr) out.push_back(moe);
  }
  return out;
}

void force_experts(const CausalLM& model, const torch::Tensor& experts) {
  for (auto* l : moe_layers(model)) l->force_experts(experts);
}

}  // namespace btx
