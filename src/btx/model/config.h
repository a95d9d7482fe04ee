// The model's configuration, with Hugging Face Llama key names so that `config.json` is a dump
// of this struct and HF configs load into it. One `visit` lists every field once; TOML and JSON
// readers/writers all go through it, so no field can be forgotten in one of them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/util/names.h"

namespace btx {

struct RouterTraits;  // router.h

// The FFN family of a model: config.json's model_type (HF's names for the first two).
enum class ModelType {
  kLlama,    // "llama": dense SwiGLU FFN
  kMixtral,  // "mixtral": MoE FFN (moe.h)
  kSmear,    // "smear": merged-expert FFN (smear.h)
};
const std::vector<Named<ModelType>>& names(ModelType);

// The Hugging Face architecture a model's attention and embeddings come from (config.json's
// model_type for a dense model): what its attention computes. Any FFN family above runs on any of
// them (a BTX MoE of a Qwen3 base keeps Qwen3's attention).
enum class BaseModelType {
  kLlama,    // "llama": Llama 1-3.x, SmolLM2; attention_bias (q/k/v/o), rope_scaling
  kMistral,  // "mistral": Llama's layout; sliding_window
  kQwen2,    // "qwen2": Qwen2 / Qwen2.5; q/k/v biases (no o bias), always
  kQwen3,    // "qwen3": per-head RMSNorm of q and k before RoPE (q_norm, k_norm); attention_bias
};
const std::vector<Named<BaseModelType>>& names(BaseModelType);
// Hugging Face's class of a dense model of that base: "Qwen3ForCausalLM".
const char* hf_architecture(BaseModelType base);

struct ModelConfig {
  ModelType model_type = ModelType::kLlama;
  BaseModelType base_model_type = BaseModelType::kLlama;
  int64_t vocab_size = 0;           // 0 in a run config: taken from the tokenizer
  int64_t hidden_size = 128;        // C
  int64_t intermediate_size = 352;  // SwiGLU inner width
  int64_t num_hidden_layers = 4;    // L
  int64_t num_attention_heads = 4;  // H
  int64_t num_key_value_heads = 4;  // grouped-query heads (== H: plain multi-head)
  int64_t max_position_embeddings = 256;
  int64_t explicit_head_dim = 0;  // "head_dim": D when not hidden_size / num_attention_heads
  double rope_theta = 10000.0;
  // rope_scaling (HF's object, as flat keys): "" (none) | "linear" (positions / factor) |
  // "llama3" (Llama 3.1+: low frequencies / factor, high kept, a smooth ramp between).
  std::string rope_scaling_type;
  double rope_scaling_factor = 1.0;
  double rope_low_freq_factor = 1.0;                     // llama3
  double rope_high_freq_factor = 4.0;                    // llama3
  int64_t rope_original_max_position_embeddings = 8192;  // llama3
  bool attention_bias = false;  // llama, qwen3: biases on q, k, v and o (qwen2: q, k, v always)
  // mistral: each position attends to at most this many (itself included); 0: no limit. btx
  // computes full attention, so a longer sequence is refused (never computed differently).
  int64_t sliding_window = 0;
  double rms_norm_eps = 1e-5;
  bool tie_word_embeddings = true;
  double initializer_range = 0.02;
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;
  // Mixture of experts ("mixtral"; HF Mixtral keys, plus btx's router_mode and z-loss).
  int64_t num_local_experts = 0;    // N experts per layer
  int64_t num_experts_per_tok = 2;  // k of top-k routing
  // mixtral: top-k | soft (all experts) | sample (per sequence) | hash (of the token id) | tag
  // (the sequence's domain label: an oracle baseline) | gumbel (top-1, straight-through
  // Gumbel-softmax) | reinforce (top-1 sampled, REINFORCE with a learned baseline).
  // smear: prefix (causal: the mean of each prefix) | sequence (the whole sequence: not causal).
  std::string router_mode = "top-k";
  double router_aux_loss_coef = 0.01;  // Switch load-balancing weight alpha (0: none)
  double router_z_loss_coef = 0.0;     // router z-loss weight (0: none)
  double smear_expert_dropout = 0.0;   // SMEAR: drop each merge weight with this probability
  // Null experts (router.h, route_top_k_null; Kilian et al. 2026): M slots beside the N real
  // experts that compute nothing, chosen by top-k like the others, so a token uses 0..k real
  // experts. mixtral with router top-k only; 0: none. Not a Hugging Face key.
  int64_t num_null_experts = 0;
  // MetaMoE's context-aware router input (Jiang et al. 2026): the router reads
  // (1-λ)·h_t + λ·c_t, c_t the mean of h over the prefix (causal), λ = sigmoid of a learned
  // scalar per layer. mixtral with a learned causal router only. Not a Hugging Face key.
  bool router_context = false;
  // BAM (attention_experts.h): E attention experts per layer mixed by a soft router; 0: one
  // plain attention. Not a Hugging Face key: such models are btx's own architecture.
  int64_t num_attention_experts = 0;

  template <typename V>
  void visit(V& v) {
    v.field("model_type", model_type);
    v.field("vocab_size", vocab_size);
    v.field("hidden_size", hidden_size);
    v.field("intermediate_size", intermediate_size);
    v.field("num_hidden_layers", num_hidden_layers);
    v.field("num_attention_heads", num_attention_heads);
    v.field("num_key_value_heads", num_key_value_heads);
    v.field("max_position_embeddings", max_position_embeddings);
    v.field("base_model_type", base_model_type);
    v.field("head_dim", explicit_head_dim);
    v.field("rope_theta", rope_theta);
    v.field("rope_scaling_type", rope_scaling_type);
    v.field("rope_scaling_factor", rope_scaling_factor);
    v.field("rope_low_freq_factor", rope_low_freq_factor);
    v.field("rope_high_freq_factor", rope_high_freq_factor);
    v.field("rope_original_max_position_embeddings", rope_original_max_position_embeddings);
    v.field("attention_bias", attention_bias);
    v.field("sliding_window", sliding_window);
    v.field("rms_norm_eps", rms_norm_eps);
    v.field("tie_word_embeddings", tie_word_embeddings);
    v.field("initializer_range", initializer_range);
    v.field("bos_token_id", bos_token_id);
    v.field("eos_token_id", eos_token_id);
    v.field("num_local_experts", num_local_experts);
    v.field("num_experts_per_tok", num_experts_per_tok);
    v.field("router_mode", router_mode);
    v.field("router_aux_loss_coef", router_aux_loss_coef);
    v.field("router_z_loss_coef", router_z_loss_coef);
    v.field("smear_expert_dropout", smear_expert_dropout);
    v.field("num_null_experts", num_null_experts);
    v.field("router_context", router_context);
    v.field("num_attention_experts", num_attention_experts);
  }

  bool is_moe() const { return model_type == ModelType::kMixtral; }
  bool is_smear() const { return model_type == ModelType::kSmear; }
  // A mixture of attention experts in every layer (BAM).
  bool has_attention_experts() const { return num_attention_experts > 0; }
  // A router and N experts per layer (MoE or SMEAR).
  bool is_routed() const { return is_moe() || is_smear(); }
  // The traits of router_mode (router.h) for a routed model; an error for a dense one or an
  // unknown mode.
  const RouterTraits& router() const;
  // False when routing reads the whole sequence (MoE "sample", SMEAR "sequence"): position t's
  // output then depends on later tokens, and its perplexity is not a language model's. A dense
  // model is causal.
  bool is_causal() const;

  // D: head_dim when given (Qwen3: 128 with hidden_size 1024 and 16 heads), else C / H.
  int64_t head_dim() const {
    return explicit_head_dim > 0 ? explicit_head_dim : hidden_size / num_attention_heads;
  }
  // Biases on the q, k and v projections (qwen2 always; llama, qwen3 with attention_bias) and
  // on the output projection (attention_bias).
  bool qkv_bias() const { return attention_bias || base_model_type == BaseModelType::kQwen2; }
  bool o_bias() const { return attention_bias; }
  // Per-head RMSNorm of q and k (qwen3).
  bool qk_norm() const { return base_model_type == BaseModelType::kQwen3; }
  // The longest sequence the model computes: max_position_embeddings, or sliding_window when it
  // is smaller (beyond it Mistral's attention would differ from btx's full attention).
  int64_t max_sequence() const {
    return sliding_window > 0 ? std::min(sliding_window, max_position_embeddings)
                              : max_position_embeddings;
  }
  // Throws btx::Error naming the offending key (`where` prefixes it, e.g. the file).
  void validate(const std::string& where) const;
  // The part of validate() about the attention of base_model_type (biases, windows, rope).
  void validate_attention(const std::string& where) const;
  bool operator==(const ModelConfig& o) const;
  bool operator!=(const ModelConfig& o) const { return !(*this == o); }
};

// The fields in which two configs differ, e.g. "hidden_size 64 vs 128"; "" when equal.
std::string model_config_difference(const ModelConfig& a, const ModelConfig& b);

// HF-style config.json: our fields plus "architectures" and "torch_dtype".
nlohmann::json model_config_to_json(const ModelConfig& c);
// Reads a config.json; keys HF writes that do not change the model are ignored, any other
// unknown key is an error naming `where`.
ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& where);

}  // namespace btx
