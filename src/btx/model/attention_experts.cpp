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
  std::vector<torch::Tensor> wq, wk, wv, wo;
  for (const auto& m : *experts) {
    const auto& a = *m->as<AttentionImpl>();
    wq.push_back(a.q_proj->weight);
    wk.push_back(a.k_proj->weight);
    wv.push_back(a.v_proj->weight);
    wo.push_back(a.o_proj->weight);
  }
  // Expert-major heads: expert e's query heads are e·H .. e·H + H-1, its key/value heads
  // e·G .. e·G + G-1, so attend()'s repeat of each key/value head over H/G query heads keeps
  // every expert's heads with its own keys.
  auto proj = [&](const std::vector<torch::Tensor>& w, int64_t heads) {
    return torch::linear(x, torch::cat(w)).view({B, T, heads, D}).transpose(1, 2);
  };
  auto y = attend(proj(wq, E * H), proj(wk, E * G), proj(wv, E * G), rope, cache, mask);
  // Softmax gates in fp32 (also under bf16 autocast), then each expert's heads weighted before
  // the concatenated output projection: Σ_e g_e o_e(y_e) = [o_1 .. o_E] (g_1 y_1; ..; g_E y_E).
  auto g = torch::softmax(gate(x), -1, torch::kFloat32);  // (B, T, E)
  last_gates_ = g.detach();
  auto weighted = y.transpose(1, 2).reshape({B, T, E, H * D}) * g.unsqueeze(-1).to(y.dtype());
  return torch::linear(weighted.reshape({B, T, E * H * D}), torch::cat(wo, 1));
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
std::string attention_router_name(int64_t layer) {
  return fmt::format("model.layers.{}.self_attn.gate.weight", layer);
}

}  // namespace btx
