#include "btx/merge/neuron_align.h"

#include "btx/merge/assignment.h"
#include "btx/util/error.h"

namespace btx {

namespace {

// A layer's dense FFN.
SwiGluMlpImpl& dense_mlp(CausalLM& model, int64_t layer) {
  auto* mlp = dynamic_cast<SwiGluMlpImpl*>(
      model->model->layers[static_cast<size_t>(layer)]->as<DecoderLayerImpl>()->ffn.get());
  BTX_CHECK(mlp != nullptr, "neuron alignment: layer {} has no dense FFN (a routed model)", layer);
  return *mlp;
}

// Each layer's neuron activations (tokens, F) of a forward of `ids`, layer by layer as the
// decoder computes them.
std::vector<torch::Tensor> activations(CausalLM& model, const torch::Tensor& ids) {
  const ModelConfig& c = model->config();
  const int64_t T = ids.size(1);
  const auto rope = rope_tables(T, RopeSpec::of(c), 0, ids.device());
  const FfnContext ctx{ids, {}};
  auto x = model->model->embed_tokens(ids);
  std::vector<torch::Tensor> out;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    auto& layer = *model->model->layers[static_cast<size_t>(l)]->as<DecoderLayerImpl>();
    auto h = x + layer.self_attn->forward(layer.input_layernorm(x), rope);
    auto& mlp = dense_mlp(model, l);
    const auto in = layer.post_attention_layernorm(h);
    const auto act = torch::silu(mlp.gate_proj(in)) * mlp.up_proj(in);  // (B, T, F)
    out.push_back(act.reshape({-1, act.size(-1)}).to(torch::kFloat64));
    x = h + mlp.down_proj(act);
  }
  return out;
}

}  // namespace

std::vector<torch::Tensor> neuron_correlations(CausalLM& anchor, CausalLM& expert,
                                               const torch::Tensor& windows, int64_t batch) {
  const ModelConfig &a = anchor->config(), &e = expert->config();
  BTX_CHECK(
      !a.is_routed() && !e.is_routed() && !a.has_attention_experts() && !e.has_attention_experts(),
      "neuron alignment: both models must be dense");
  BTX_CHECK(model_config_difference(a, e).empty(),
            "neuron alignment: the models differ in shape ({})", model_config_difference(a, e));
  BTX_CHECK(windows.dim() == 2 && windows.size(0) > 0, "neuron alignment: no calibration windows");
  torch::NoGradGuard no_grad;
  const int64_t L = a.num_hidden_layers, F = a.intermediate_size;
  // Sums over tokens of x, x^2 (anchor), y, y^2 (expert) and x^T y, per layer.
  std::vector<torch::Tensor> sx(L), sxx(L), sy(L), syy(L), sxy(L);
  int64_t n = 0;
  for (int64_t r = 0; r < windows.size(0); r += batch) {
    const auto ids = windows.narrow(0, r, std::min(batch, windows.size(0) - r));
    const auto xa = activations(anchor, ids), ya = activations(expert, ids);
    for (int64_t l = 0; l < L; ++l) {
      const auto &x = xa[static_cast<size_t>(l)], &y = ya[static_cast<size_t>(l)];
      if (!sx[l].defined()) {
        sx[l] = torch::zeros({F}, torch::kFloat64);
        sy[l] = torch::zeros({F}, torch::kFloat64);
        sxx[l] = torch::zeros({F}, torch::kFloat64);
        syy[l] = torch::zeros({F}, torch::kFloat64);
        sxy[l] = torch::zeros({F, F}, torch::kFloat64);
      }
      sx[l] += x.sum(0);
      sy[l] += y.sum(0);
      sxx[l] += x.pow(2).sum(0);
      syy[l] += y.pow(2).sum(0);
      sxy[l] += x.t().mm(y);
    }
    n += ids.numel();
  }
  std::vector<torch::Tensor> out;
  const double N = static_cast<double>(n);
  for (int64_t l = 0; l < L; ++l) {
    const auto mx = sx[l] / N, my = sy[l] / N;
    const auto cov = sxy[l] / N - mx.unsqueeze(1) * my.unsqueeze(0);
    // A neuron that never varies correlates with nothing (its deviation floored, not divided by 0).
    const auto dx = (sxx[l] / N - mx.pow(2)).clamp_min(1e-12).sqrt();
    const auto dy = (syy[l] / N - my.pow(2)).clamp_min(1e-12).sqrt();
    out.push_back(cov / (dx.unsqueeze(1) * dy.unsqueeze(0)));
  }
  return out;
}

void permute_ffn_neurons(CausalLM& model, int64_t layer, const std::vector<int64_t>& perm) {
  auto& mlp = dense_mlp(model, layer);
  const int64_t F = mlp.gate_proj->weight.size(0);
  BTX_CHECK(static_cast<int64_t>(perm.size()) == F,
            "neuron alignment: a permutation of {} neurons for a layer of {}", perm.size(), F);
  torch::NoGradGuard no_grad;
  const auto index = torch::tensor(perm, torch::kInt64);
  mlp.gate_proj->weight.copy_(mlp.gate_proj->weight.index_select(0, index));
  mlp.up_proj->weight.copy_(mlp.up_proj->weight.index_select(0, index));
  mlp.down_proj->weight.copy_(mlp.down_proj->weight.index_select(1, index));
}

std::vector<std::vector<int64_t>> align_ffn_neurons(CausalLM& anchor, CausalLM& expert,
                                                    const torch::Tensor& windows) {
  const auto corr = neuron_correlations(anchor, expert, windows);
  std::vector<std::vector<int64_t>> perms;
  for (size_t l = 0; l < corr.size(); ++l) {
    perms.push_back(max_score_assignment(corr[l]));
    permute_ffn_neurons(expert, static_cast<int64_t>(l), perms.back());
  }
  return perms;
}

}  // namespace btx
