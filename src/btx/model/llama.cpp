#include "btx/model/llama.h"

#include <limits>

#include "btx/model/attention_experts.h"
#include "btx/model/moe.h"
#include "btx/model/router.h"
#include "btx/model/smear.h"

namespace btx {

std::shared_ptr<FeedForwardImpl> dense_ffn(const ModelConfig& c, int64_t /*layer*/) {
  return std::make_shared<SwiGluMlpImpl>(c.hidden_size, c.intermediate_size);
}

std::shared_ptr<FeedForwardImpl> config_ffn(const ModelConfig& c, int64_t layer) {
  if (c.is_moe()) return std::make_shared<MoeFfnImpl>(c);
  if (c.is_smear()) return std::make_shared<SmearFfnImpl>(c);
  return dense_ffn(c, layer);
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, std::shared_ptr<FeedForwardImpl> f) {
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  self_attn = register_module("self_attn", config_attention(c));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  const std::string name = f->hf_name();
  ffn = register_module(name, std::move(f));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const RopeTables& rope,
                                        const FfnContext& ctx) {
  auto h = x + self_attn->forward(input_layernorm(x), rope);
  return h + ffn->forward(post_attention_layernorm(h), ctx);
}

torch::Tensor DecoderLayerImpl::forward_cached(const torch::Tensor& x, const RopeTables& rope,
                                               const FfnContext& ctx, LayerCache& cache,
                                               const torch::Tensor& mask) {
  auto h = x + self_attn->forward(input_layernorm(x), rope, &cache, mask);
  return h + ffn->forward_cached(post_attention_layernorm(h), ctx, cache.ffn);
}

LlamaModelImpl::LlamaModelImpl(const ModelConfig& c, const FfnFactory& make_ffn) : config(c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    layers->push_back(DecoderLayer(c, make_ffn(c, i)));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

namespace {
// A sequence of `length` positions, checked against the longest the model computes.
void check_length(const ModelConfig& c, int64_t length) {
  TORCH_CHECK(length <= c.max_sequence(), "sequence length ", length, " exceeds ",
              c.sliding_window > 0 && c.sliding_window < c.max_position_embeddings
                  ? "the model's sliding_window "
                  : "max_position_embeddings ",
              c.max_sequence());
}
}  // namespace

torch::Tensor LlamaModelImpl::forward(const torch::Tensor& input) {
  // Token ids to the model's device (a no-op where they are): callers build them on the CPU.
  const auto ids = input.to(embed_tokens->weight.device());
  const int64_t T = ids.size(1);
  check_length(config, T);
  auto rope = rope_tables(T, RopeSpec::of(config), 0, ids.device());
  auto x = embed_tokens(ids);  // (B, T, C)
  const FfnContext ctx{ids, {}};
  for (auto& layer : *layers) x = layer->as<DecoderLayerImpl>()->forward(x, rope, ctx);
  return norm(x);
}

torch::Tensor LlamaModelImpl::forward_cached(const torch::Tensor& input, KVCache& cache) {
  const auto ids = input.to(embed_tokens->weight.device());
  const int64_t B = ids.size(0), T = ids.size(1), S = cache.length;
  const auto L = static_cast<size_t>(config.num_hidden_layers);
  RopeTables rope;
  torch::Tensor mask;       // undefined: the plain causal mask over S + T slots
  torch::Tensor positions;  // (B, T): each new token's index in its own sequence
  auto steps = torch::arange(T, torch::TensorOptions(torch::kInt64).device(ids.device()));
  if (!cache.pad.defined()) {
    check_length(config, S + T);
    rope = rope_tables(T, RopeSpec::of(config), S, ids.device());
    positions = (S + steps).unsqueeze(0).expand({B, T});
  } else {
    TORCH_CHECK(cache.pad.size(0) == B, "KV cache has ", cache.pad.size(0), " rows for ", B);
    // Each row at its own positions; slot j is visible to new position i of row b when it is
    // not padding (j >= pad[b]) and not in the future (j <= S + i). A padding position (a
    // prompt shorter than the others read with them, at a negative position) sees itself only,
    // so that it stays finite; no real position sees it.
    auto pad = cache.pad.to(ids.device());
    positions = (S - pad).unsqueeze(1) + steps;  // (B, T)
    check_length(config, positions.max().item<int64_t>() + 1);
    rope = rope_tables_at(positions, RopeSpec::of(config));
    auto slot = torch::arange(S + T, pad.options());                     // (S+T)
    auto query = (S + torch::arange(T, pad.options())).view({1, T, 1});  // (1, T, 1)
    auto visible =
        (slot.view({1, 1, -1}).ge(pad.view({B, 1, 1})) & slot.view({1, 1, -1}).le(query)) |
        slot.view({1, 1, -1}).eq(query);  // (B, T, S+T)
    mask = torch::zeros(visible.sizes(), torch::TensorOptions().device(ids.device()))
               .masked_fill(visible.logical_not(), -std::numeric_limits<float>::infinity())
               .unsqueeze(1);  // (B, 1, T, S+T)
  }
  cache.layers.resize(L);
  auto x = embed_tokens(ids);
  const FfnContext ctx{ids, positions};
  for (size_t i = 0; i < L; ++i) {
    x = layers[i]->as<DecoderLayerImpl>()->forward_cached(x, rope, ctx, cache.layers[i], mask);
  }
  cache.length = S + T;
  return norm(x);
}

CausalLMImpl::CausalLMImpl(const ModelConfig& c, const FfnFactory& make_ffn) {
  model = register_module("model", LlamaModel(c, make_ffn));
  if (!c.tie_word_embeddings) {
    lm_head = register_module(
        "lm_head",
        torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.vocab_size).bias(false)));
  }
  init_weights();
}

torch::Tensor CausalLMImpl::lm_logits(const torch::Tensor& h) {
  return lm_head ? lm_head(h) : torch::matmul(h, model->embed_tokens->weight.t());
}

torch::Tensor CausalLMImpl::forward(const torch::Tensor& ids) {
  return lm_logits(model(ids));  // (B, T, C) -> (B, T, V)
}

bool CausalLMImpl::supports_cache() const {
  // Token-wise FFNs need no state; SMEAR's prefix router keeps a running sum
  // (SmearFfnImpl::forward_cached); per-sequence and tag routing read the whole sequence.
  return !config().is_routed() || config().router().cacheable;
}

torch::Tensor CausalLMImpl::forward_cached(const torch::Tensor& ids, KVCache& cache, LogitsAt at) {
  TORCH_CHECK(supports_cache(), "incremental decoding needs token-by-token FFNs; model_type ",
              name_of(config().model_type), " with router_mode ", config().router_mode,
              " must be recomputed with forward()");
  auto h = model->forward_cached(ids, cache);  // (B, T, C)
  return lm_logits(at == LogitsAt::kLast ? h.select(1, -1) : h);
}

void CausalLMImpl::init_weights() {
  torch::NoGradGuard no_grad;
  const double std = config().initializer_range;
  for (auto& p : named_parameters()) {
    const std::string& name = p.key();
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      p.value().zero_();  // projection biases (qwen2, attention_bias)
    } else if (name.size() > 12 && name.compare(name.size() - 12, 12, ".context_mix") == 0) {
      p.value().fill_(-2.0);  // the context-aware router's λ = sigmoid(-2), as merges start it
    } else if (p.value().dim() == 1) {
      p.value().fill_(1.0);  // RMSNorm gains (q_norm and k_norm too)
    } else {
      p.value().normal_(0.0, std);
    }
  }
}

namespace {
// Σ over the layers of a per-FFN loss, skipping the layers that have none; undefined if none.
template <typename F>
torch::Tensor sum_over_routed(const LlamaModel& model, F loss_of) {
  torch::Tensor total;
  for (const auto& layer : *model->layers) {
    const auto* routed =
        dynamic_cast<const RoutedFfnImpl*>(layer->as<DecoderLayerImpl>()->ffn.get());
    if (routed == nullptr) continue;
    auto a = loss_of(*routed);
    if (a.defined()) total = total.defined() ? total + a : a;
  }
  return total;
}
}  // namespace

torch::Tensor CausalLMImpl::aux_loss() const {
  return sum_over_routed(model, [](const RoutedFfnImpl& f) { return f.aux_loss(); });
}

torch::Tensor CausalLMImpl::policy_loss(const torch::Tensor& token_nll) const {
  return sum_over_routed(model, [&](const RoutedFfnImpl& f) { return f.policy_loss(token_nll); });
}

int64_t CausalLMImpl::num_params() const {
  return count_params(*this);
}

int64_t CausalLMImpl::num_active_params() const {
  int64_t n = num_params();
  for (const auto& layer : *model->layers) {
    const auto& ffn = *layer->as<DecoderLayerImpl>()->ffn;
    n -= count_params(ffn) - ffn.active_params();
  }
  return n;
}

torch::Tensor token_nll(CausalLM& model, const torch::Tensor& batch) {
  // To the model's device (a no-op where they already are), read off one weight: listing every
  // parameter for each batch would be work on the hot path.
  const auto tokens = batch.to(model->model->embed_tokens->weight.device());
  const int64_t T = tokens.size(1) - 1;
  return next_token_nll(model->forward(tokens.narrow(1, 0, T)), tokens);
}

torch::Tensor next_token_nll(const torch::Tensor& logits, const torch::Tensor& tokens) {
  const int64_t B = logits.size(0), T = logits.size(1);
  // In fp32 also under bf16 autocast (a no-op otherwise).
  auto nll = torch::nn::functional::cross_entropy(
      logits.reshape({B * T, -1}).to(torch::kFloat32), tokens.narrow(1, 1, T).reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  return nll.view({B, T});
}

torch::Tensor lm_loss(CausalLM& model, const torch::Tensor& tokens) {
  return token_nll(model, tokens).mean();
}

int64_t forward_flops_per_token(const CausalLM& model, int64_t context) {
  const auto& c = model->config();
  const int64_t embedding = c.vocab_size * c.hidden_size;
  const int64_t untied_head = c.tie_word_embeddings ? 0 : embedding;
  int64_t norms = (2 * c.num_hidden_layers + 1) * c.hidden_size;
  int64_t matmul_weights = model->num_active_params() - embedding - untied_head - norms;
  int64_t ffn_flops = 0, score_flops = 0;
  for (const auto& layer : *model->model->layers) {
    const auto& l = *layer->as<DecoderLayerImpl>();
    matmul_weights -= l.ffn->active_params();
    ffn_flops += l.ffn->ffn_flops_per_token(context);
    score_flops += l.self_attn->score_flops_per_token(context);
  }
  return 2 * (matmul_weights + embedding) + ffn_flops + score_flops;
}

}  // namespace btx
