#include "btx/model/moe.h"

#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "btx/util/error.h"

// at::_grouped_mm came with LibTorch 2.8.
#define BTX_HAS_GROUPED_MM \
  (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8))

namespace btx {

namespace {
torch::nn::Linear linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
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

namespace {

// The experts' weights of one projection stacked for a batched or grouped product: (E, in, out),
// so that x (.., in) @ W[e] is the projection; column-major (the stack of the (out, in) weights,
// transposed), as grouped products want their second operand.
torch::Tensor stacked(const torch::nn::ModuleList& experts, torch::nn::Linear MoeExpertImpl::*w) {
  std::vector<torch::Tensor> ws;
  for (size_t e = 0; e < experts->size(); ++e) {
    ws.push_back((experts->ptr(e)->as<MoeExpertImpl>()->*w)->weight);
  }
  return torch::stack(ws).transpose(1, 2);
}

// xs (M, C): tokens sorted by expert, n[e] of expert e. Each expert's products on its slice.
torch::Tensor loop_products(const torch::nn::ModuleList& experts, const torch::Tensor& xs,
                            const int64_t* n) {
  std::vector<torch::Tensor> ys;
  int64_t start = 0;
  for (size_t e = 0; e < experts->size(); ++e) {
    if (n[e] == 0) continue;
    ys.push_back(experts->ptr(e)->as<MoeExpertImpl>()->forward(xs.narrow(0, start, n[e])));
    start += n[e];
  }
  return torch::cat(ys);
}

// The slices padded to the longest: (E, longest, C), one bmm per projection, then unpadded.
torch::Tensor batched_products(const torch::nn::ModuleList& experts, const torch::Tensor& xs,
                               const torch::Tensor& expert_of, const int64_t* n) {
  const auto E = static_cast<int64_t>(experts->size());
  const int64_t longest = *std::max_element(n, n + E);
  // The place of each sorted token within its expert's slice.
  std::vector<int64_t> starts(static_cast<size_t>(E), 0);
  for (int64_t e = 1; e < E; ++e) starts[e] = starts[e - 1] + n[e - 1];
  const auto opts = torch::TensorOptions(torch::kInt64).device(xs.device());
  const auto slot = torch::arange(xs.size(0), opts) -
                    torch::tensor(starts, torch::kInt64).to(xs.device()).index_select(0, expert_of);
  auto padded = torch::zeros({E, longest, xs.size(1)}, xs.options())
                    .index_put({expert_of, slot}, xs);  // out of place: gradients flow to xs
  auto w1 = stacked(experts, &MoeExpertImpl::w1).to(xs.dtype());
  auto w2 = stacked(experts, &MoeExpertImpl::w2).to(xs.dtype());
  auto w3 = stacked(experts, &MoeExpertImpl::w3).to(xs.dtype());
  auto y = torch::bmm(torch::silu(torch::bmm(padded, w1)) * torch::bmm(padded, w3), w2);
  return y.index({expert_of, slot});
}

// One grouped product per projection (at::_grouped_mm), or an undefined tensor where it cannot
// run (older LibTorch, the CPU, a dtype or shape it refuses): the caller falls back.
torch::Tensor grouped_products(const torch::nn::ModuleList& experts, const torch::Tensor& xs,
                               const int64_t* n) {
#if BTX_HAS_GROUPED_MM
  if (!xs.is_cuda()) return {};
  const auto E = static_cast<int64_t>(experts->size());
  std::vector<int32_t> ends(static_cast<size_t>(E));
  int64_t total = 0;
  for (int64_t e = 0; e < E; ++e) ends[e] = static_cast<int32_t>(total += n[e]);
  const auto offs = torch::tensor(ends, torch::kInt32).to(xs.device());
  const auto dtype = torch::kBFloat16;
  try {
    auto x = xs.to(dtype);
    auto mm = [&](const torch::Tensor& a, torch::nn::Linear MoeExpertImpl::*w) {
      return at::_grouped_mm(a, stacked(experts, w).to(dtype), offs);
    };
    auto h = torch::silu(mm(x, &MoeExpertImpl::w1)) * mm(x, &MoeExpertImpl::w3);
    return mm(h, &MoeExpertImpl::w2).to(xs.dtype());
  } catch (const c10::Error&) {
    return {};
  }
#else
  (void)experts;
  (void)xs;
  (void)n;
  return {};
#endif
}

}  // namespace

bool grouped_mm_compiled() {
  return BTX_HAS_GROUPED_MM;
}

torch::Tensor dispatch_experts(const torch::nn::ModuleList& experts, const torch::Tensor& x,
                               const Routing& r, bool null_slots, ExpertProducts how) {
  const int64_t N = x.size(0), k = r.experts.size(1), E = static_cast<int64_t>(experts->size());
  // Every (token, slot) pair, grouped by expert: a stable sort keeps token order within one.
  auto flat = r.experts.reshape({-1});  // (N*k)
  torch::Tensor pairs;                  // with null slots: the pairs of real experts
  if (null_slots) {
    pairs = flat.lt(E).nonzero().squeeze(1);
    flat = flat.index_select(0, pairs);
  }
  auto [sorted_experts, order] = flat.sort(/*stable=*/true, 0, false);
  if (pairs.defined()) order = pairs.index_select(0, order);  // back to (token, slot) pairs
  auto token = order.div(k, "floor");                         // the token of each sorted pair
  auto gate = r.weights.reshape({-1}).index_select(0, order).unsqueeze(1).to(x.dtype());
  auto counts = torch::bincount(flat, {}, E).to(torch::kCPU);
  const auto* n = counts.data_ptr<int64_t>();
  if (token.numel() == 0)
    return torch::zeros({N, x.size(1)}, x.options());  // every token chose nulls
  auto xs = x.index_select(0, token);                  // (N*k, C) tokens in expert order
  if (how == ExpertProducts::kAuto) {
    how = x.is_cuda() ? ExpertProducts::kGrouped : ExpertProducts::kLoop;
  }
  torch::Tensor y;
  if (how == ExpertProducts::kGrouped) y = grouped_products(experts, xs, n);
  if (!y.defined() && how != ExpertProducts::kLoop) {
    y = batched_products(experts, xs, sorted_experts, n);
  }
  if (!y.defined()) y = loop_products(experts, xs, n);
  return torch::zeros({N, x.size(1)}, x.options()).index_add_(0, token, y * gate);
}

RoutedFfnImpl::RoutedFfnImpl(const ModelConfig& c) : num_experts(c.num_local_experts) {
  c.validate("MoE layer config");
  gate = register_module("gate", linear(c.hidden_size, num_experts));
  experts = register_module("experts", torch::nn::ModuleList());
  for (int64_t e = 0; e < num_experts; ++e) {
    experts->push_back(MoeExpert(c.hidden_size, c.intermediate_size));
  }
}

MoeFfnImpl::MoeFfnImpl(const ModelConfig& c)
    : RoutedFfnImpl(c),
      top_k(c.num_experts_per_tok),
      router(&c.router()),
      aux_coef(c.router_aux_loss_coef),
      z_coef(c.router_z_loss_coef) {
  if (router->training == RouterTraining::kPolicyGradient) {
    baseline = register_module("baseline", linear(c.hidden_size, 1));
    torch::NoGradGuard no_grad;
    baseline->weight.zero_();
  }
  if (c.num_null_experts > 0) {
    num_null = c.num_null_experts;
    null_gate = register_module("null_gate", linear(c.hidden_size, 1));
  }
  if (c.router_context) context_mix = register_parameter("context_mix", torch::full({1}, -2.0));
}

torch::Tensor MoeFfnImpl::context_input(const torch::Tensor& x, const torch::Tensor& sums,
                                        const torch::Tensor& counts) const {
  const auto lambda = torch::sigmoid(context_mix).to(x.dtype());
  return (1 - lambda) * x + lambda * (sums / counts);
}

torch::Tensor MoeFfnImpl::forward_cached(const torch::Tensor& x, const FfnContext& ctx,
                                         torch::Tensor& state) {
  if (!context_mix.defined()) return forward(x, ctx);
  const int64_t T = x.size(1);
  // Padding positions (negative: a shorter prompt read beside longer ones) add nothing.
  const auto real = ctx.positions.ge(0).to(x.dtype()).unsqueeze(-1);  // (B, T, 1)
  auto sums = (x * real).cumsum(1);
  if (state.defined()) sums = sums + state.unsqueeze(1);
  state = sums.select(1, T - 1).contiguous();
  const auto counts = (ctx.positions + 1).clamp_min(1).to(x.dtype()).unsqueeze(-1);
  return mix(x, context_input(x, sums, counts), ctx);
}

void RoutedFfnImpl::record(const torch::Tensor& h) {
  if (!record_inputs) return;
  const auto h64 = h.detach().to(torch::kFloat64);
  auto sum = h64.sum(0);
  input_sum = input_sum.defined() ? input_sum + sum : sum;
  if (record_gram) {
    auto gram = h64.t().mm(h64);
    input_gram = input_gram.defined() ? input_gram + gram : gram;
  }
  input_count += h.size(0);
}

torch::Tensor RoutedFfnImpl::forced_ids(int64_t B, int64_t T) const {
  BTX_CHECK(forced_.numel() == 1 || forced_.numel() == B, "forced experts: {} ids for {} sequences",
            forced_.numel(), B);
  BTX_CHECK(forced_.min().item<int64_t>() >= 0 && forced_.max().item<int64_t>() < num_experts,
            "forced expert id out of range [0, {})", num_experts);
  return forced_.to(torch::kInt64).reshape({-1, 1}).expand({B, T});
}

Routing MoeFfnImpl::route(const torch::Tensor& logits, int64_t B, int64_t T,
                          const torch::Tensor& token_ids) const {
  if (forced_.defined()) return route_forced(logits, forced_ids(B, T));
  return btx::route(*router, {logits, B, T, top_k, token_ids, is_training()});
}

torch::Tensor MoeFfnImpl::forward(const torch::Tensor& x, const FfnContext& ctx) {
  if (!context_mix.defined()) return mix(x, x, ctx);
  const auto counts =
      torch::arange(1, x.size(1) + 1, x.options()).reshape({1, -1, 1});  // (1, T, 1)
  return mix(x, context_input(x, x.cumsum(1), counts), ctx);
}

torch::Tensor MoeFfnImpl::mix(const torch::Tensor& x, const torch::Tensor& router_input,
                              const FfnContext& ctx) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  auto h = x.reshape({B * T, C});
  const auto u = router_input.reshape({B * T, C});
  record(u);
  const bool nulls = num_null > 0 && !forced_.defined();
  // fp32 under autocast
  Routing r = nulls ? route_top_k_null(gate(u).to(torch::kFloat32),
                                       null_gate(u).to(torch::kFloat32), num_null, top_k)
                    : route(gate(u).to(torch::kFloat32), B, T, ctx.token_ids);
  auto out = dispatch_experts(experts, h, r, nulls);
  if (router->training == RouterTraining::kPolicyGradient && is_training() && !forced_.defined()) {
    chosen_logp_ = torch::log_softmax(r.logits, -1).gather(1, r.experts).squeeze(1);
    baseline_pred_ = baseline(u.detach()).squeeze(1);
  } else {
    chosen_logp_ = baseline_pred_ = torch::Tensor();
  }
  if (is_training() && router->balanced()) {
    // Over every slot, null ones included.
    aux_loss_ = load_balancing_loss(r, r.probs.size(1), aux_coef);
    if (z_coef > 0) aux_loss_ = aux_loss_ + router_z_loss(r.logits, z_coef);
  } else {
    aux_loss_ = torch::Tensor();
  }
  if (nulls) {
    // The null slots as one column N: their logit, their summed probability.
    const int64_t E = num_experts;
    if (!is_training()) {
      real_pairs_ += r.experts.lt(E).sum().item<int64_t>();
      routed_tokens_ += B * T;
    }
    last_ = Routing{
        r.logits.narrow(1, 0, E + 1).detach(),
        torch::cat(
            {r.probs.narrow(1, 0, E), r.probs.narrow(1, E, num_null).sum(1, /*keepdim=*/true)}, 1)
            .detach(),
        r.experts.clamp_max(E), r.weights.detach()};
  } else {
    last_ = Routing{r.logits.detach(), r.probs.detach(), r.experts, r.weights.detach()};
  }
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

torch::Tensor RoutedFfnImpl::last_usage() const {
  BTX_CHECK(last_.has_value(), "no forward pass yet");
  const auto& r = *last_;
  // Null experts' column (id N) counted apart and left out.
  auto counts = torch::zeros({r.probs.size(1)}, torch::kFloat64)
                    .index_add_(0, r.experts.reshape({-1}).cpu(),
                                torch::ones({r.experts.numel()}, torch::kFloat64));
  return counts.narrow(0, 0, num_experts) / static_cast<double>(r.experts.size(0));
}

std::optional<double> MoeFfnImpl::measured_experts_per_token() const {
  if (num_null == 0 || routed_tokens_ == 0) return std::nullopt;
  return static_cast<double>(real_pairs_) / static_cast<double>(routed_tokens_);
}

int64_t MoeFfnImpl::active_params() const {
  const int64_t per_expert = experts->ptr(0)->as<MoeExpertImpl>()->w1->weight.numel() * 3;
  const int64_t used = router->experts == ExpertsPerToken::kAll    ? num_experts
                       : router->experts == ExpertsPerToken::kTopK ? top_k
                                                                   : 1;
  if (num_null > 0) {
    // Measured in evaluation; before it, what balanced routing would give: k · N / (N + M).
    const double mean = measured_experts_per_token().value_or(
        static_cast<double>(top_k * num_experts) / static_cast<double>(num_experts + num_null));
    return gate->weight.numel() + null_gate->weight.numel() + (context_mix.defined() ? 1 : 0) +
           std::llround(mean * static_cast<double>(per_expert));
  }
  return gate->weight.numel() + (context_mix.defined() ? 1 : 0) + used * per_expert;
}

std::string dense_ffn_name(int64_t layer, const std::string& w) {
  const char* proj = w == "w1" ? "gate" : w == "w3" ? "up" : "down";
  return fmt::format("model.layers.{}.mlp.{}_proj.weight", layer, proj);
}

std::string moe_ffn_name(int64_t layer, int64_t expert, const std::string& w) {
  return fmt::format("model.layers.{}.block_sparse_moe.experts.{}.{}.weight", layer, expert, w);
}

std::string moe_router_name(int64_t layer) {
  return fmt::format("model.layers.{}.block_sparse_moe.gate.weight", layer);
}

std::vector<RoutedFfnImpl*> routed_layers(const CausalLM& model) {
  std::vector<RoutedFfnImpl*> out;
  for (const auto& layer : *model->model->layers) {
    auto* moe = dynamic_cast<RoutedFfnImpl*>(layer->as<DecoderLayerImpl>()->ffn.get());
    if (moe != nullptr) out.push_back(moe);
  }
  return out;
}

void force_experts(const CausalLM& model, const torch::Tensor& experts) {
  for (auto* l : routed_layers(model)) l->force_experts(experts);
}

FfnInputStatistics ffn_input_statistics(CausalLM model, const std::vector<torch::Tensor>& data,
                                        const std::vector<int64_t>& forced, int64_t seq_len,
                                        bool grams) {
  BTX_CHECK(data.size() == forced.size(), "FFN input statistics: {} datasets, {} forced experts",
            data.size(), forced.size());
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  const std::vector<RoutedFfnImpl*> layers = routed_layers(model);
  BTX_CHECK(!layers.empty(), "FFN input statistics: the model has no routed layers");
  FfnInputStatistics st;
  st.sums.resize(layers.size());
  st.grams.resize(layers.size());
  for (size_t i = 0; i < data.size(); ++i) {
    for (auto* l : layers) {
      l->force_experts(torch::tensor({forced[i]}));
      l->record_inputs = true;
      l->record_gram = grams;
      l->input_sum = torch::Tensor();
      l->input_gram = torch::Tensor();
      l->input_count = 0;
    }
    const auto& d = data[i];
    for (int64_t r = 0; r < d.size(0); r += 16) {
      model->forward(d.narrow(0, r, std::min<int64_t>(16, d.size(0) - r)).narrow(1, 0, seq_len));
    }
    for (size_t l = 0; l < layers.size(); ++l) {
      st.sums[l].push_back(layers[l]->input_sum);
      if (grams) st.grams[l].push_back(layers[l]->input_gram);
    }
    st.counts.push_back(layers.front()->input_count);
  }
  for (auto* l : layers) {
    l->force_experts(torch::Tensor());
    l->record_inputs = false;
    l->record_gram = false;
    l->input_sum = torch::Tensor();
    l->input_gram = torch::Tensor();
  }
  if (was_training) model->train();
  return st;
}

}  // namespace btx
