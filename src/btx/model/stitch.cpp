#include "btx/model/stitch.h"

#include <c10/util/Exception.h>

namespace btx {

std::vector<int64_t> stitch_points(int64_t layers, int64_t every) {
  TORCH_CHECK(every >= 1, "a stitch every ", every, " layers: expected at least 1");
  std::vector<int64_t> out;
  for (int64_t l = every; l < layers; l += every) out.push_back(l);
  out.push_back(layers);
  return out;
}

StitchImpl::StitchImpl(int64_t hidden, int64_t experts, bool into_experts) {
  const int64_t C = hidden, N = experts;
  gate = register_module("gate", torch::nn::Linear(C, N + 1));
  project = register_parameter("project", torch::eye(C).expand({N, C, C}).contiguous());
  if (into_experts) {
    back_gate = register_module("back_gate", torch::nn::Linear(C, N));
    back = register_parameter("back", torch::zeros({N, C, C}));
  }
  torch::NoGradGuard no_grad;
  gate->weight.zero_();
  gate->bias.zero_();
  if (back_gate) {
    back_gate->weight.zero_();
    back_gate->bias.zero_();
  }
}

torch::Tensor StitchImpl::into_hub(const torch::Tensor& h, const torch::Tensor& e,
                                   torch::Tensor* gates) {
  const int64_t N = e.size(0), C = e.size(-1);
  // P_i e_i for every expert at once: (N, B*T, C) @ (N, C, C)^T.
  auto projected = torch::bmm(e.reshape({N, -1, C}), project.transpose(1, 2)).view(e.sizes());
  auto g = torch::softmax(gate(h), -1);  // (B, T, N+1)
  if (gates != nullptr) *gates = g.detach();
  auto mixed = (g.narrow(-1, 1, N).permute({2, 0, 1}).unsqueeze(-1) * projected).sum(0);
  return g.narrow(-1, 0, 1) * h + mixed;
}

torch::Tensor StitchImpl::into_experts(const torch::Tensor& h, const torch::Tensor& e) {
  TORCH_CHECK(back.defined(), "this stitch does not feed the experts (the last layer's)");
  const int64_t C = h.size(-1);
  auto q = torch::matmul(h.reshape({1, -1, C}), back.transpose(1, 2)).view(e.sizes());
  auto s = torch::sigmoid(back_gate(h)).permute({2, 0, 1}).unsqueeze(-1);  // (N, B, T, 1)
  return e + s * q;
}

int64_t StitchImpl::params() const {
  return count_params(*this);
}

StitchedLMImpl::StitchedLMImpl(CausalLM hub_model, std::vector<CausalLM> expert_models,
                               int64_t every)
    : experts(std::move(expert_models)), every_(every) {
  TORCH_CHECK(!experts.empty(), "a stitched model needs at least one expert");
  const ModelConfig& c = hub_model->config();
  TORCH_CHECK(!c.is_routed(), "the hub of a stitched model must be a dense model");
  for (size_t i = 0; i < experts.size(); ++i) {
    const std::string diff = model_config_difference(c, experts[i]->config());
    TORCH_CHECK(diff.empty(), "expert ", i, " of a stitched model differs from the hub (", diff,
                ")");
  }
  hub = register_module("hub", std::move(hub_model));
  auto list = register_module("experts", torch::nn::ModuleList());
  for (auto& e : experts) list->push_back(e);
  for (auto& p : hub->parameters()) p.set_requires_grad(false);
  for (auto& e : experts) {
    for (auto& p : e->parameters()) p.set_requires_grad(false);
  }
  points_ = stitch_points(c.num_hidden_layers, every);
  stitches = register_module("stitches", torch::nn::ModuleList());
  for (size_t k = 0; k < points_.size(); ++k) {
    stitches->push_back(Stitch(c.hidden_size, num_experts(), k + 1 < points_.size()));
  }
  const auto device = hub->model->embed_tokens->weight.device();
  stitches->to(device);
}

torch::Tensor StitchedLMImpl::forward(const torch::Tensor& ids, std::vector<torch::Tensor>* gates) {
  const ModelConfig& c = hub->config();
  const int64_t T = ids.size(1);
  TORCH_CHECK(T <= c.max_sequence(), "sequence length ", T, " exceeds the model's ",
              c.max_sequence());
  const auto rope = rope_tables(T, RopeSpec::of(c), 0, ids.device());
  const FfnContext ctx{ids, {}};
  auto layer = [&](CausalLM& m, int64_t l, const torch::Tensor& x) {
    return m->model->layers[static_cast<size_t>(l)]->as<DecoderLayerImpl>()->forward(x, rope, ctx);
  };
  auto h = hub->model->embed_tokens(ids);
  std::vector<torch::Tensor> e;
  for (auto& m : experts) e.push_back(m->model->embed_tokens(ids));
  size_t next = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    h = layer(hub, l, h);
    for (size_t i = 0; i < experts.size(); ++i) e[i] = layer(experts[i], l, e[i]);
    if (l + 1 != points_[next]) continue;
    auto& stitch = *stitches[next]->as<StitchImpl>();
    auto stacked = torch::stack(e);  // (N, B, T, C)
    torch::Tensor g;
    h = stitch.into_hub(h, stacked, gates != nullptr ? &g : nullptr);
    if (gates != nullptr) gates->push_back(g);
    if (stitch.back.defined()) e = stitch.into_experts(h, stacked).unbind(0);
    ++next;
  }
  return hub->lm_logits(hub->model->norm(h));
}

std::vector<std::pair<std::string, torch::Tensor>> StitchedLMImpl::stitch_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : stitches->named_parameters())
    out.emplace_back("stitches." + p.key(), p.value());
  return out;
}

int64_t StitchedLMImpl::num_stitch_params() const {
  return count_params(*stitches);
}

int64_t StitchedLMImpl::num_params() const {
  int64_t n = hub->num_params() + num_stitch_params();
  for (const auto& e : experts) n += e->num_params();
  return n;
}

int64_t StitchedLMImpl::flops_per_token(int64_t context) const {
  const ModelConfig& c = hub->config();
  const int64_t head = 2 * c.hidden_size * c.vocab_size;  // an expert's LM head, never run
  int64_t flops = forward_flops_per_token(hub, context) + 2 * num_stitch_params();
  for (const auto& e : experts) flops += forward_flops_per_token(e, context) - head;
  return flops;
}

torch::Tensor stitched_token_nll(StitchedLM& model, const torch::Tensor& batch,
                                 std::vector<torch::Tensor>* gates) {
  const auto tokens = batch.to(model->hub->model->embed_tokens->weight.device());
  const int64_t T = tokens.size(1) - 1;
  return next_token_nll(model->forward(tokens.narrow(1, 0, T), gates), tokens);
}

}  // namespace btx
