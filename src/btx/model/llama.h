// The decoder-only language model, Llama-style, with submodules registered under Hugging Face
// names (model.embed_tokens, model.layers.i.self_attn.q_proj, ..., model.norm, lm_head), so a
// checkpoint is a plain walk over named_parameters(). The FFN of each layer comes from a factory,
// which is how MoE and SMEAR models reuse everything else. Shapes as in layers.h; V vocab.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>

#include "btx/model/config.h"
#include "btx/model/kv_cache.h"
#include "btx/model/layers.h"

namespace btx {

using FfnFactory =
    std::function<std::shared_ptr<FeedForwardImpl>(const ModelConfig&, int64_t layer)>;
// The dense SwiGLU FFN of the seed and the experts.
std::shared_ptr<FeedForwardImpl> dense_ffn(const ModelConfig& c, int64_t layer);
// The FFN the config names: dense for "llama", the MoE FFN (moe.h) for "mixtral".
std::shared_ptr<FeedForwardImpl> config_ffn(const ModelConfig& c, int64_t layer);

struct DecoderLayerImpl : torch::nn::Module {
  DecoderLayerImpl(const ModelConfig& c, std::shared_ptr<FeedForwardImpl> ffn);
  torch::Tensor forward(const torch::Tensor& x /* (B, T, C) */, const RopeTables& rope,
                        const FfnContext& ctx);
  // The positions after the cached ones (cache and mask as in AttentionImpl::forward).
  torch::Tensor forward_cached(const torch::Tensor& x, const RopeTables& rope,
                               const FfnContext& ctx, LayerCache& cache,
                               const torch::Tensor& mask = {});
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  std::shared_ptr<AttentionSlotImpl> self_attn;  // attention, or attention experts (BAM)
  std::shared_ptr<FeedForwardImpl> ffn;
};
TORCH_MODULE(DecoderLayer);

// "model": embeddings, the layers and the final norm.
struct LlamaModelImpl : torch::nn::Module {
  LlamaModelImpl(const ModelConfig& c, const FfnFactory& make_ffn);
  torch::Tensor forward(const torch::Tensor& ids /* (B, T) */);  // -> (B, T, C)
  // The T tokens after the cache's S positions -> (B, T, C); the cache grows by T.
  torch::Tensor forward_cached(const torch::Tensor& ids, KVCache& cache);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers;
  RMSNorm norm{nullptr};
  ModelConfig config;
};
TORCH_MODULE(LlamaModel);

// Which positions' logits a forward computes: the LM head (C x V per position) dominates a
// small model's prefill, and decoding needs only the last position's.
enum class LogitsAt { kAll, kLast };

struct CausalLMImpl : torch::nn::Module {
  explicit CausalLMImpl(const ModelConfig& c, const FfnFactory& make_ffn = config_ffn);
  torch::Tensor forward(const torch::Tensor& ids /* (B, T) */);  // -> logits (B, T, V)
  // Incremental decoding: logits (B, T, V) of the T tokens after the cached ones (kLast: of
  // the last one, (B, V)); equals the last T positions of forward() on the whole sequence.
  // Needs an FFN that works token by token (dense, MoE with a per-token router): SMEAR's
  // prefix mean and per-sequence routers are an error (recompute them with forward()).
  torch::Tensor forward_cached(const torch::Tensor& ids, KVCache& cache,
                               LogitsAt at = LogitsAt::kAll);
  // The LM head on hidden states (..., C) -> logits (..., V): lm_head, or the tied embedding.
  torch::Tensor lm_logits(const torch::Tensor& h);
  // Whether forward_cached() can run this model.
  bool supports_cache() const;
  // Draws fresh weights (normal(0, initializer_range), norms 1) from torch's global generator.
  void init_weights();
  int64_t num_params() const;
  int64_t num_active_params() const;
  // Sum of the layers' auxiliary losses of the last training forward (MoE load balancing);
  // undefined when there are none.
  torch::Tensor aux_loss() const;
  // Sum of the layers' policy-gradient losses (REINFORCE routing) given the last training
  // forward's per-token loss (B, T); undefined when there are none.
  torch::Tensor policy_loss(const torch::Tensor& token_nll) const;
  const ModelConfig& config() const { return model->config; }

  LlamaModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // absent when tie_word_embeddings
};
TORCH_MODULE(CausalLM);

// Next-token cross-entropy of each position of `tokens` (B, T+1): inputs [:, :-1], targets
// [:, 1:] -> (B, T), on the model's device (the tokens are moved there).
torch::Tensor token_nll(CausalLM& model, const torch::Tensor& tokens);
// The same from logits (B, T, V) already computed for tokens[:, :-1] of `tokens` (B, T+1).
torch::Tensor next_token_nll(const torch::Tensor& logits, const torch::Tensor& tokens);
// Its mean.
torch::Tensor lm_loss(CausalLM& model, const torch::Tensor& tokens);

// Forward FLOPs per token at context length T (Kaplan et al. 2020): 2 * (active non-embedding
// weights + the LM head's C*V) + 2 * L * T * C for attention scores and values (E times that
// with E attention experts). Training costs three times that (forward + backward).
int64_t forward_flops_per_token(const CausalLM& model, int64_t context);

}  // namespace btx
