#include "btx/merge/neuron_align.h"

#include <regex>

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

// The residual stream's states (tokens * (L + 1), C) of a forward of `ids`: each layer's input
// and the last layer's output, stacked.
torch::Tensor residual_states(CausalLM& model, const torch::Tensor& ids) {
  const ModelConfig& c = model->config();
  const auto rope = rope_tables(ids.size(1), RopeSpec::of(c), 0, ids.device());
  const FfnContext ctx{ids, {}};
  auto x = model->model->embed_tokens(ids);
  std::vector<torch::Tensor> out = {x.reshape({-1, x.size(-1)})};
  for (const auto& layer : *model->model->layers) {
    x = layer->as<DecoderLayerImpl>()->forward(x, rope, ctx);
    out.push_back(x.reshape({-1, x.size(-1)}));
  }
  return torch::cat(out).to(torch::kFloat64);
}

// Sums over tokens of x, x², y, y² and xᵀy of two sets of activations (tokens, F) on the same
// text, and their correlation matrix (F, F).
class CrossMoments {
 public:
  void add(const torch::Tensor& x, const torch::Tensor& y) {
    if (!sxy_.defined()) {
      sx_ = torch::zeros({x.size(1)}, torch::kFloat64);
      sxx_ = torch::zeros_like(sx_);
      sy_ = torch::zeros({y.size(1)}, torch::kFloat64);
      syy_ = torch::zeros_like(sy_);
      sxy_ = torch::zeros({x.size(1), y.size(1)}, torch::kFloat64);
    }
    sx_ += x.sum(0);
    sy_ += y.sum(0);
    sxx_ += x.pow(2).sum(0);
    syy_ += y.pow(2).sum(0);
    sxy_ += x.t().mm(y);
    n_ += x.size(0);
  }
  torch::Tensor correlation() const {
    const double N = static_cast<double>(n_);
    const auto mx = sx_ / N, my = sy_ / N;
    const auto cov = sxy_ / N - mx.unsqueeze(1) * my.unsqueeze(0);
    // One that never varies correlates with nothing (its deviation floored, not divided by 0).
    const auto dx = (sxx_ / N - mx.pow(2)).clamp_min(1e-12).sqrt();
    const auto dy = (syy_ / N - my.pow(2)).clamp_min(1e-12).sqrt();
    return cov / (dx.unsqueeze(1) * dy.unsqueeze(0));
  }

 private:
  torch::Tensor sx_, sxx_, sy_, syy_, sxy_;
  int64_t n_ = 0;
};

// The checks both alignments make before they compute anything.
void check_alignable(CausalLM& anchor, CausalLM& expert, const torch::Tensor& windows) {
  const ModelConfig &a = anchor->config(), &e = expert->config();
  BTX_CHECK(
      !a.is_routed() && !e.is_routed() && !a.has_attention_experts() && !e.has_attention_experts(),
      "neuron alignment: both models must be dense");
  BTX_CHECK(model_config_difference(a, e).empty(),
            "neuron alignment: the models differ in shape ({})", model_config_difference(a, e));
  BTX_CHECK(windows.dim() == 2 && windows.size(0) > 0, "neuron alignment: no calibration windows");
}

}  // namespace

std::vector<torch::Tensor> neuron_correlations(CausalLM& anchor, CausalLM& expert,
                                               const torch::Tensor& windows, int64_t batch) {
  check_alignable(anchor, expert, windows);
  torch::NoGradGuard no_grad;
  std::vector<CrossMoments> moments(static_cast<size_t>(anchor->config().num_hidden_layers));
  for (int64_t r = 0; r < windows.size(0); r += batch) {
    const auto ids = windows.narrow(0, r, std::min(batch, windows.size(0) - r));
    const auto xa = activations(anchor, ids), ya = activations(expert, ids);
    for (size_t l = 0; l < moments.size(); ++l) moments[l].add(xa[l], ya[l]);
  }
  std::vector<torch::Tensor> out;
  for (const auto& m : moments) out.push_back(m.correlation());
  return out;
}

torch::Tensor residual_correlations(CausalLM& anchor, CausalLM& expert,
                                    const torch::Tensor& windows, int64_t batch) {
  check_alignable(anchor, expert, windows);
  torch::NoGradGuard no_grad;
  CrossMoments moments;
  for (int64_t r = 0; r < windows.size(0); r += batch) {
    const auto ids = windows.narrow(0, r, std::min(batch, windows.size(0) - r));
    moments.add(residual_states(anchor, ids), residual_states(expert, ids));
  }
  return moments.correlation();
}

std::vector<int64_t> align_residual_stream(CausalLM& anchor, CausalLM& expert,
                                           const torch::Tensor& windows,
                                           torch::Tensor* correlation) {
  const auto corr = residual_correlations(anchor, expert, windows);
  auto perm = max_score_assignment(corr);
  permute_residual_stream(expert, perm);
  if (correlation) *correlation = corr;
  return perm;
}

void permute_residual_stream(CausalLM& model, const std::vector<int64_t>& perm) {
  const ModelConfig& c = model->config();
  BTX_CHECK(!c.is_routed() && !c.has_attention_experts(),
            "residual alignment: the model must be dense");
  BTX_CHECK(static_cast<int64_t>(perm.size()) == c.hidden_size,
            "residual alignment: a permutation of {} dimensions for a stream of {}", perm.size(),
            c.hidden_size);
  // Which dimension of each tensor is the stream: its columns (the tensors that read it), its
  // rows (those that write it, and the norms' weights); the attention's outputs within the
  // heads (q/k/v biases, q/k norms) are not the stream.
  static const std::regex reads(
      R"(model\.embed_tokens\.weight|lm_head\.weight|model\.layers\.\d+\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)\.weight)");
  static const std::regex writes(
      R"(model\.norm\.weight|model\.layers\.\d+\.((input|post_attention)_layernorm\.weight|self_attn\.o_proj\.(weight|bias)|mlp\.down_proj\.weight))");
  static const std::regex inside(
      R"(model\.layers\.\d+\.self_attn\.([qkv]_proj\.bias|[qk]_norm\.weight))");
  torch::NoGradGuard no_grad;
  const auto index = torch::tensor(perm, torch::kInt64);
  for (auto& p : model->named_parameters()) {
    auto& w = p.value();
    if (std::regex_match(p.key(), reads)) {
      w.copy_(w.index_select(1, index));
    } else if (std::regex_match(p.key(), writes)) {
      w.copy_(w.index_select(0, index));
    } else {
      BTX_CHECK(std::regex_match(p.key(), inside), "residual alignment: no rule for tensor '{}'",
                p.key());
    }
  }
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
                                                    const torch::Tensor& windows,
                                                    std::vector<torch::Tensor>* correlations) {
  const auto corr = neuron_correlations(anchor, expert, windows);
  if (correlations) *correlations = corr;
  std::vector<std::vector<int64_t>> perms;
  for (size_t l = 0; l < corr.size(); ++l) {
    perms.push_back(max_score_assignment(corr[l]));
    permute_ffn_neurons(expert, static_cast<int64_t>(l), perms.back());
  }
  return perms;
}

}  // namespace btx
