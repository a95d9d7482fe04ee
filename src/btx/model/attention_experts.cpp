#include "btx/model/attention_experts.h"

#include <fmt/format.h>

#include "btx/util/error.h"

namespace btx {

AttentionExpertsImpl::AttentionExpertsImpl(const ModelConfig& c)
    : num_experts(c.num_attention_experts) {
  BTX_CHECK(num_experts >= 1, "attention experts: num_attention_experts must be >= 1, got {}",
            num_experts);
  experts = register_module("experts", torch::nn::ModuleList());
  for (int64_t e = 0; e < num_experts; ++e) experts->push_back(Attention(c));
  gate = register_module(
      "gate", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, num_experts).bias(false)));
}

torch::Tensor AttentionExpertsImpl::forward(const torch::Tensor& x, const RopeTables& rope,
                                            LayerCache* cache, const torch::Tensor& mask) {
  const int64_t B = x.size(0), T = x.size(1), E = num_experts;
  const auto& first = *experts[0]->as<AttentionImpl>();
  const int64_t H = first.n_head, G = first.n_kv_head, D = first.head_dim;
  // Each projection's weights (and biases, qwen2 / attention_bias) of every expert, concatenated.
  struct Stacked {
    std::vector<torch::Tensor> w, b;
    void add(const torch::nn::Linear& l) {
      w.push_back(l->weight);
      if (l->bias.defined()) b.push_back(l->bias);
    }
    torch::Tensor bias() const { return b.empty() ? torch::Tensor() : torch::cat(b); }
  } q, k, v, o;
  std::vector<torch::Tensor> q_norms, k_norms;  // qwen3: (D) per expert
  for (const auto& m : *experts) {
    const auto& a = *m->as<AttentionImpl>();
    q.add(a.q_proj);
    k.add(a.k_proj);
    v.add(a.v_proj);
    o.add(a.o_proj);
    if (a.q_norm) {
      q_norms.push_back(a.q_norm->weight);
      k_norms.push_back(a.k_norm->weight);
    }
  }
  // Expert-major heads: expert e's query heads are e·H .. e·H + H-1, its key/value heads
  // e·G .. e·G + G-1, so attend()'s repeat of each key/value head over H/G query heads keeps
  // every expert's heads with its own keys.
  auto proj = [&](const Stacked& p, int64_t heads) {
    return torch::linear(x, torch::cat(p.w), p.bias()).view({B, T, heads, D});
  };
  // qwen3's RMSNorm of each head (B, T, E·heads, D), with its expert's gain.
  auto head_norm = [&](const torch::Tensor& t, const std::vector<torch::Tensor>& gains,
                       int64_t heads) {
    if (gains.empty()) return t;
    const auto tf = t.to(torch::kFloat32);
    const auto y = tf * torch::rsqrt(tf.pow(2).mean(-1, /*keepdim=*/true) + first.q_norm->eps);
    return torch::stack(gains).repeat_interleave(heads, 0) * y.to(t.scalar_type());
  };
  auto yq = head_norm(proj(q, E * H), q_norms, H).transpose(1, 2);
  auto yk = head_norm(proj(k, E * G), k_norms, G).transpose(1, 2);
  auto y = attend(yq, yk, proj(v, E * G).transpose(1, 2), rope, cache, mask);
  // Softmax gates in fp32 (also under bf16 autocast), then each expert's heads weighted before
  // the concatenated output projection: Σ_e g_e o_e(y_e) = [o_1 .. o_E] (g_1 y_1; ..; g_E y_E),
  // plus Σ_e g_e b_e when the output projections have biases.
  auto g = torch::softmax(gate(x), -1, torch::kFloat32);  // (B, T, E)
  last_gates_ = g.detach();
  auto weighted = y.transpose(1, 2).reshape({B, T, E, H * D}) * g.unsqueeze(-1).to(y.dtype());
  auto out = torch::linear(weighted.reshape({B, T, E * H * D}), torch::cat(o.w, 1));
  if (!o.b.empty()) out = out + torch::matmul(g.to(out.dtype()), torch::stack(o.b));
  return out;
}

int64_t AttentionExpertsImpl::score_flops_per_token(int64_t context) const {
  return num_experts * experts->at<AttentionImpl>(0).score_flops_per_token(context);
}

std::shared_ptr<AttentionSlotImpl> config_attention(const ModelConfig& c) {
  if (c.has_attention_experts()) return std::make_shared<AttentionExpertsImpl>(c);
  return std::make_shared<AttentionImpl>(c);
}

std::string attention_name(int64_t layer, const std::string& p) {
  return fmt::format("model.layers.{}.self_attn.{}_proj.weight", layer, p);
}
std::string attention_expert_name(int64_t layer, int64_t expert, const std::string& p) {
  return fmt::format("model.layers.{}.self_attn.experts.{}.{}_proj.weight", layer, expert, p);
}
std::string attention_expert_tensor(int64_t layer, int64_t expert, const std::string& tail) {
  return fmt::format("model.layers.{}.self_attn.experts.{}.{}", layer, expert, tail);
}
std::string attention_router_name(int64_t layer) {
  return fmt::format("model.layers.{}.self_attn.gate.weight", layer);
}

}  // namespace btx
