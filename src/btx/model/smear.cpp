#include "btx/model/smear.h"

#include "btx/util/error.h"

namespace btx {

StackedExperts stack_experts(const torch::nn::ModuleList& experts) {
  std::vector<torch::Tensor> w1, w2, w3;
  for (const auto& m : *experts) {
    const auto* e = m->as<MoeExpertImpl>();
    w1.push_back(e->w1->weight);
    w2.push_back(e->w2->weight);
    w3.push_back(e->w3->weight);
  }
  return {torch::stack(w1), torch::stack(w2), torch::stack(w3)};
}

torch::Tensor smear_merge_per_sequence(const torch::Tensor& x, const torch::Tensor& p,
                                       const StackedExperts& w) {
  const int64_t E = w.w1.size(0), F = w.w1.size(1), C = w.w1.size(2);
  const int64_t B = p.size(0);
  // W_b = Σ_e p_be W_e for every sequence b at once: (B, E) x (E, F*C) -> (B, F, C).
  auto merged = [&](const torch::Tensor& s, int64_t rows, int64_t cols) {
    return torch::matmul(p.to(s.dtype()), s.reshape({E, rows * cols})).view({B, rows, cols});
  };
  auto w1 = merged(w.w1, F, C), w3 = merged(w.w3, F, C), w2 = merged(w.w2, C, F);
  auto a = torch::bmm(x, w1.transpose(1, 2));  // (B, T, F)
  auto b = torch::bmm(x, w3.transpose(1, 2));
  return torch::bmm(torch::silu(a) * b, w2.transpose(1, 2));  // (B, T, C)
}

torch::Tensor smear_mix_per_position(const torch::Tensor& x, const torch::Tensor& p,
                                     const StackedExperts& w) {
  const int64_t E = w.w1.size(0), F = w.w1.size(1), C = w.w1.size(2);
  const int64_t N = x.size(0);
  auto pw = p.to(x.dtype()).unsqueeze(1);  // (N, 1, E)
  // Σ_e p_ne (W_e x_n) = p_n^T [W_1 x_n; ...; W_E x_n]: every expert's product in one matmul.
  auto mix_in = [&](const torch::Tensor& s) {
    auto u = torch::matmul(x, s.reshape({E * F, C}).t()).view({N, E, F});
    return torch::bmm(pw, u).squeeze(1);  // (N, F)
  };
  auto g = torch::silu(mix_in(w.w1)) * mix_in(w.w3);  // (N, F)
  // Σ_e p_ne W2_e g_n = [W2_1 ... W2_E] (p_n ⊗ g_n).
  auto pg = (pw.transpose(1, 2) * g.unsqueeze(1)).reshape({N, E * F});
  auto w2 = w.w2.permute({1, 0, 2}).reshape({C, E * F});  // (C, E*F), expert-major columns
  return torch::matmul(pg, w2.t());
}

torch::Tensor smear_merge_per_position(const torch::Tensor& x, const torch::Tensor& p,
                                       const StackedExperts& w, int64_t chunk) {
  BTX_CHECK(chunk >= 1, "chunk must be >= 1, got {}", chunk);
  const int64_t N = x.size(0);
  std::vector<torch::Tensor> out;
  for (int64_t s = 0; s < N; s += chunk) {
    const int64_t n = std::min(chunk, N - s);
    // n "sequences" of one position each.
    out.push_back(
        smear_merge_per_sequence(x.narrow(0, s, n).unsqueeze(1), p.narrow(0, s, n), w).squeeze(1));
  }
  return torch::cat(out);
}

namespace {
torch::Tensor rms_normalise(const torch::Tensor& m, double eps) {
  return m * torch::rsqrt(m.pow(2).mean(-1, /*keepdim=*/true) + eps);
}
}  // namespace

torch::Tensor smear_router_input(const torch::Tensor& x, bool causal, double eps) {
  torch::Tensor m;
  if (causal) {
    const int64_t T = x.size(1);
    auto count = torch::arange(1, T + 1, x.options()).view({1, T, 1});
    m = x.cumsum(1) / count;
  } else {
    m = x.mean(1, /*keepdim=*/true);
  }
  return rms_normalise(m, eps);
}

torch::Tensor expert_dropout(const torch::Tensor& p, double rate) {
  BTX_CHECK(rate >= 0 && rate < 1, "expert dropout rate must be in [0, 1), got {}", rate);
  if (rate == 0) return p;
  // One draw per row of a (N, E) p; per sequence for (B, T, E), shared by its positions.
  auto shape = p.sizes().vec();
  if (p.dim() == 3) shape[1] = 1;
  auto keep = torch::bernoulli(torch::full(shape, 1.0 - rate, p.options()));
  auto kept = p * keep;
  auto sum = kept.sum(-1, /*keepdim=*/true);
  return torch::where(sum > 0, kept / sum.clamp_min(1e-30), p);
}

SmearFfnImpl::SmearFfnImpl(const ModelConfig& c)
    : RoutedFfnImpl(c),
      causal(c.router().causal),
      dropout_rate(c.smear_expert_dropout),
      eps(c.rms_norm_eps) {}

torch::Tensor SmearFfnImpl::weights_of(const torch::Tensor& router_input) {
  const int64_t B = router_input.size(0), T = router_input.size(1);
  if (forced_.defined()) {
    return torch::one_hot(forced_ids(B, T).to(router_input.device()), num_experts)
        .to(router_input.dtype());
  }
  return torch::softmax(gate(router_input), -1, torch::kFloat32);
}

torch::Tensor SmearFfnImpl::merge_weights(const torch::Tensor& x) {
  return weights_of(smear_router_input(x, causal, eps));
}

torch::Tensor SmearFfnImpl::forward(const torch::Tensor& x, const FfnContext& /*ctx*/) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  record(x.reshape({B * T, C}));
  auto p = merge_weights(x);  // (B, T or 1, E)
  auto used = is_training() ? expert_dropout(p, dropout_rate) : p;
  const StackedExperts& w = stacked();
  torch::Tensor out;
  if (causal) {
    out = smear_mix_per_position(x.reshape({B * T, C}), used.reshape({B * T, num_experts}), w)
              .view({B, T, C});
  } else {
    out = smear_merge_per_sequence(x, used.squeeze(1), w);
  }
  // For analysis: every expert "chosen", weighted by its merge weight, per token.
  auto probs = p.detach().expand({B, T, num_experts}).reshape({B * T, num_experts});
  Routing r;
  r.logits = probs.log();
  r.probs = probs;
  r.experts = torch::arange(num_experts, torch::TensorOptions(torch::kInt64).device(x.device()))
                  .expand({B * T, num_experts});
  r.weights = probs;
  last_ = r;
  return out;
}

const StackedExperts& SmearFfnImpl::stacked() {
  // Kept only for inference (eval mode, no autograd): a training stack is part of the graph.
  std::vector<std::pair<const void*, int64_t>> key;
  const bool keep = !is_training() && !torch::GradMode::is_enabled();
  if (keep) {
    for (const auto& p : experts->parameters()) key.emplace_back(p.data_ptr(), p._version());
  }
  if (!keep || key != stacked_key_) {
    stacked_ = stack_experts(experts);
    stacked_key_ = std::move(key);
  }
  return stacked_;
}

torch::Tensor SmearFfnImpl::forward_cached(const torch::Tensor& x, const FfnContext& ctx,
                                           torch::Tensor& state) {
  const torch::Tensor& positions = ctx.positions;
  TORCH_CHECK(causal, "SMEAR's sequence router reads the whole sequence: it cannot be cached");
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  // Padding positions (negative: a shorter prompt read beside longer ones) add nothing to the
  // prefix sums.
  auto real = positions.ge(0).to(x.dtype()).unsqueeze(-1);  // (B, T, 1)
  auto sums = (x * real).cumsum(1);  // (B, T, C): the prefix sums of the new positions
  if (state.defined()) sums = sums + state.unsqueeze(1);
  state = sums.select(1, T - 1).contiguous();
  auto count = (positions + 1).clamp_min(1).to(x.dtype()).unsqueeze(-1);  // (B, T, 1)
  auto p = weights_of(rms_normalise(sums / count, eps));                  // (B, T, E)
  return smear_mix_per_position(x.reshape({B * T, C}), p.reshape({B * T, num_experts}), stacked())
      .view({B, T, C});
}

int64_t SmearFfnImpl::active_params() const {
  return gate->weight.numel() + experts->ptr(0)->as<MoeExpertImpl>()->w1->weight.numel() * 3;
}

int64_t SmearFfnImpl::ffn_flops_per_token(int64_t context) const {
  const int64_t expert = experts->ptr(0)->as<MoeExpertImpl>()->w1->weight.numel() * 3;
  const int64_t router = 2 * gate->weight.numel();
  if (causal) return router + 2 * num_experts * expert;
  return router + 2 * expert + 2 * num_experts * expert / std::max<int64_t>(context, 1);
}

}  // namespace btx
