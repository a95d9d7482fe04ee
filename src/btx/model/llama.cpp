#include "btx/model/llama.h"

#include "btx/model/moe.h"
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
  self_attn = register_module("self_attn", Attention(c));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  const std::string name = f->hf_name();
  ffn = register_module(name, std::move(f));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const RopeTables& rope) {
  auto h = x + self_attn(input_layernorm(x), rope);
  return h + ffn->forward(post_attention_layernorm(h));
}

torch::Tensor DecoderLayerImpl::forward_cached(const torch::Tensor& x, const RopeTables& rope,
                                               torch::Tensor& k, torch::Tensor& v) {
  auto h = x + self_attn->forward_cached(input_layernorm(x), rope, k, v);
  return h + ffn->forward(post_attention_layernorm(h));
}

LlamaModelImpl::LlamaModelImpl(const ModelConfig& c, const FfnFactory& make_ffn) : config(c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    layers->push_back(DecoderLayer(c, make_ffn(c, i)));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor LlamaModelImpl::forward(const torch::Tensor& ids) {
  const int64_t T = ids.size(1);
  TORCH_CHECK(T <= config.max_position_embeddings, "sequence length ", T,
              " exceeds max_position_embeddings ", config.max_position_embeddings);
  auto rope = rope_tables(T, config.head_dim(), config.rope_theta, 0, ids.device());
  auto x = embed_tokens(ids);  // (B, T, C)
  for (auto& layer : *layers) {
    auto* l = layer->as<DecoderLayerImpl>();
    l->ffn->set_token_ids(ids);
    x = l->forward(x, rope);
  }
  return norm(x);
}

torch::Tensor LlamaModelImpl::forward_cached(const torch::Tensor& ids, KVCache& cache) {
  const int64_t T = ids.size(1), S = cache.length;
  TORCH_CHECK(S + T <= config.max_position_embeddings, "sequence length ", S + T,
              " exceeds max_position_embeddings ", config.max_position_embeddings);
  const auto L = static_cast<size_t>(config.num_hidden_layers);
  cache.k.resize(L);
  cache.v.resize(L);
  auto rope = rope_tables(T, config.head_dim(), config.rope_theta, S, ids.device());
  auto x = embed_tokens(ids);
  for (size_t i = 0; i < L; ++i) {
    auto* l = layers[i]->as<DecoderLayerImpl>();
    l->ffn->set_token_ids(ids);
    x = l->forward_cached(x, rope, cache.k[i], cache.v[i]);
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

torch::Tensor CausalLMImpl::forward(const torch::Tensor& ids) {
  auto h = model(ids);                                                              // (B, T, C)
  return lm_head ? lm_head(h) : torch::matmul(h, model->embed_tokens->weight.t());  // (B, T, V)
}

bool CausalLMImpl::supports_cache() const {
  const auto& c = config();
  return !c.is_smear() && !(c.is_moe() && (c.router_mode == "sample" || c.router_mode == "tag"));
}

torch::Tensor CausalLMImpl::forward_cached(const torch::Tensor& ids, KVCache& cache) {
  TORCH_CHECK(supports_cache(), "incremental decoding needs token-by-token FFNs; model_type ",
              config().model_type, " with router_mode ", config().router_mode,
              " must be recomputed with forward()");
  auto h = model->forward_cached(ids, cache);
  return lm_head ? lm_head(h) : torch::matmul(h, model->embed_tokens->weight.t());
}

void CausalLMImpl::init_weights() {
  torch::NoGradGuard no_grad;
  const double std = config().initializer_range;
  for (auto& p : named_parameters()) {
    if (p.value().dim() == 1) {
      p.value().fill_(1.0);  // RMSNorm gains
    } else {
      p.value().normal_(0.0, std);
    }
  }
}

torch::Tensor CausalLMImpl::aux_loss() const {
  torch::Tensor total;
  for (const auto& layer : *model->layers) {
    auto a = layer->as<DecoderLayerImpl>()->ffn->aux_loss();
    if (a.defined()) total = total.defined() ? total + a : a;
  }
  return total;
}

torch::Tensor CausalLMImpl::policy_loss(const torch::Tensor& token_nll) const {
  torch::Tensor total;
  for (const auto& layer : *model->layers) {
    auto a = layer->as<DecoderLayerImpl>()->ffn->policy_loss(token_nll);
    if (a.defined()) total = total.defined() ? total + a : a;
  }
  return total;
}

int64_t CausalLMImpl::num_params() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

int64_t CausalLMImpl::num_active_params() const {
  int64_t n = num_params();
  for (const auto& layer : *model->layers) {
    auto& ffn = *layer->as<DecoderLayerImpl>()->ffn;
    int64_t all = 0;
    for (const auto& p : ffn.parameters()) all += p.numel();
    n -= all - ffn.active_params();
  }
  return n;
}

torch::Tensor token_nll(CausalLM& model, const torch::Tensor& tokens) {
  const int64_t B = tokens.size(0), T = tokens.size(1) - 1;
  auto logits = model->forward(tokens.narrow(1, 0, T));  // (B, T, V)
  auto nll = torch::nn::functional::cross_entropy(
      logits.reshape({B * T, -1}), tokens.narrow(1, 1, T).reshape({-1}),
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
  int64_t ffn_flops = 0;
  for (const auto& layer : *model->model->layers) {
    const auto& ffn = *layer->as<DecoderLayerImpl>()->ffn;
    matmul_weights -= ffn.active_params();
    ffn_flops += ffn.ffn_flops_per_token(context);
  }
  return 2 * (matmul_weights + embedding) + ffn_flops +
         2 * c.num_hidden_layers * context * c.hidden_size;
}

}  // namespace btx
