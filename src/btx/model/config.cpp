#include "btx/model/config.h"

#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "btx/model/router.h"
#include "btx/util/error.h"

namespace btx {

namespace {
// The largest sizes validate() accepts: beyond any model btx can hold.
constexpr int64_t kMaxVocab = 1 << 22;  // 4M pieces
constexpr int64_t kMaxWidth = 1 << 16;  // hidden_size, heads; intermediate_size 4x
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxContext = 1 << 20;  // max_position_embeddings
constexpr int64_t kMaxExperts = 1024;
constexpr double kMaxParams = 2e11;  // 800 GB in float32

// The parameters of the model `c` describes (norms and routers left out).
double estimated_params(const ModelConfig& c) {
  const double C = static_cast<double>(c.hidden_size), F = static_cast<double>(c.intermediate_size);
  const double H = static_cast<double>(c.num_attention_heads);
  const double KV = static_cast<double>(c.num_key_value_heads);
  const double D = static_cast<double>(c.head_dim());
  const double attn = C * (H * D) * 2 + C * (KV * D) * 2;  // biases and q/k norms left out
  const double ffn = 3 * C * F * static_cast<double>(std::max<int64_t>(1, c.num_local_experts));
  const double experts_attn = static_cast<double>(std::max<int64_t>(1, c.num_attention_experts));
  const double embed = static_cast<double>(c.vocab_size) * C * (c.tie_word_embeddings ? 1 : 2);
  return embed + static_cast<double>(c.num_hidden_layers) * (attn * experts_attn + ffn + 2 * C);
}
}  // namespace

const std::vector<Named<ModelType>>& names(ModelType) {
  static const std::vector<Named<ModelType>> table = {
      {ModelType::kLlama, "llama"}, {ModelType::kMixtral, "mixtral"}, {ModelType::kSmear, "smear"}};
  return table;
}

const std::vector<Named<BaseModelType>>& names(BaseModelType) {
  static const std::vector<Named<BaseModelType>> table = {{BaseModelType::kLlama, "llama"},
                                                          {BaseModelType::kMistral, "mistral"},
                                                          {BaseModelType::kQwen2, "qwen2"},
                                                          {BaseModelType::kQwen3, "qwen3"}};
  return table;
}

const char* hf_architecture(BaseModelType base) {
  switch (base) {
    case BaseModelType::kLlama:
      return "LlamaForCausalLM";
    case BaseModelType::kMistral:
      return "MistralForCausalLM";
    case BaseModelType::kQwen2:
      return "Qwen2ForCausalLM";
    case BaseModelType::kQwen3:
      return "Qwen3ForCausalLM";
  }
  return "?";
}

const RouterTraits& ModelConfig::router() const {
  BTX_CHECK(is_routed(), "model_type '{}' has no router", name_of(model_type));
  return router_traits(model_type, router_mode, "model config");
}

bool ModelConfig::is_causal() const {
  return !is_routed() || router().causal;
}

void ModelConfig::validate_attention(const std::string& where) const {
  const char* base = name_of(base_model_type);
  BTX_CHECK(!attention_bias || base_model_type == BaseModelType::kLlama ||
                base_model_type == BaseModelType::kQwen3,
            "{}: attention_bias is a llama or qwen3 key; a {} model {}", where, base,
            base_model_type == BaseModelType::kQwen2 ? "always has q/k/v biases and no o bias"
                                                     : "has no attention biases");
  BTX_CHECK(sliding_window >= 0, "{}: sliding_window must be >= 0 (0: none), got {}", where,
            sliding_window);
  BTX_CHECK(sliding_window == 0 || base_model_type == BaseModelType::kMistral,
            "{}: sliding_window {} is a mistral key (a {} model attends to every position)", where,
            sliding_window, base);
  if (rope_scaling_type.empty()) return;
  BTX_CHECK(rope_scaling_type == "linear" || rope_scaling_type == "llama3",
            "{}: rope_scaling type '{}' is not supported (expected linear or llama3; dynamic, "
            "yarn, longrope and the others are refused, never computed differently)",
            where, rope_scaling_type);
  BTX_CHECK(std::isfinite(rope_scaling_factor) && rope_scaling_factor >= 1,
            "{}: rope_scaling factor {} must be >= 1", where, rope_scaling_factor);
  if (rope_scaling_type != "llama3") return;
  BTX_CHECK(base_model_type == BaseModelType::kLlama,
            "{}: rope_scaling llama3 is Llama 3's; a {} model does not take it", where, base);
  BTX_CHECK(std::isfinite(rope_low_freq_factor) && std::isfinite(rope_high_freq_factor) &&
                rope_low_freq_factor > 0 && rope_high_freq_factor > rope_low_freq_factor,
            "{}: rope_scaling needs 0 < low_freq_factor < high_freq_factor, got {} and {}", where,
            rope_low_freq_factor, rope_high_freq_factor);
  BTX_CHECK(rope_original_max_position_embeddings > 0,
            "{}: rope_scaling original_max_position_embeddings must be positive, got {}", where,
            rope_original_max_position_embeddings);
}

void ModelConfig::validate(const std::string& where) const {
  auto positive = [&](const char* key, int64_t v) {
    BTX_CHECK(v > 0, "{}: {} must be positive, got {}", where, key, v);
  };
  if (is_smear()) {
    positive("num_local_experts", num_local_experts);
    router_traits(model_type, router_mode, where);
    BTX_CHECK(smear_expert_dropout >= 0 && smear_expert_dropout < 1,
              "{}: smear_expert_dropout {} must be in [0, 1)", where, smear_expert_dropout);
  }
  if (is_moe()) {
    positive("num_local_experts", num_local_experts);
    const RouterTraits& r = router_traits(model_type, router_mode, where);
    BTX_CHECK(num_experts_per_tok >= 1 && num_experts_per_tok <= num_local_experts,
              "{}: num_experts_per_tok {} must be between 1 and num_local_experts {}", where,
              num_experts_per_tok, num_local_experts);
    // A learned router that picks one expert (gumbel, reinforce) computes top-1 at inference.
    BTX_CHECK(r.experts != ExpertsPerToken::kOne || !r.learned || num_experts_per_tok == 1,
              "{}: router_mode {} picks one expert: num_experts_per_tok must be 1, got {}", where,
              router_mode, num_experts_per_tok);
    BTX_CHECK(router_aux_loss_coef >= 0 && router_z_loss_coef >= 0,
              "{}: router_aux_loss_coef and router_z_loss_coef must be >= 0", where);
    BTX_CHECK(num_null_experts == 0 || r.kind == RouterKind::kTopK,
              "{}: num_null_experts {} needs router_mode top-k (null slots are chosen by the "
              "top-k of the router's logits), not {}",
              where, num_null_experts, router_mode);
  }
  BTX_CHECK(num_null_experts >= 0, "{}: num_null_experts must be >= 0, got {}", where,
            num_null_experts);
  BTX_CHECK(!router_context || (is_moe() && router().learned && router().causal),
            "{}: router_context needs a mixture of experts (model_type mixtral) with a learned "
            "causal router, not {} / {}",
            where, name_of(model_type), router_mode);
  BTX_CHECK(num_null_experts == 0 || is_moe(),
            "{}: num_null_experts {} needs a mixture of experts (model_type mixtral), not {}",
            where, num_null_experts, name_of(model_type));
  BTX_CHECK(num_attention_experts >= 0, "{}: num_attention_experts must be >= 0, got {}", where,
            num_attention_experts);
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("max_position_embeddings", max_position_embeddings);
  BTX_CHECK(explicit_head_dim >= 0, "{}: head_dim must be positive, got {}", where,
            explicit_head_dim);
  BTX_CHECK(explicit_head_dim > 0 || hidden_size % num_attention_heads == 0,
            "{}: hidden_size {} must be divisible by num_attention_heads {} (or head_dim given)",
            where, hidden_size, num_attention_heads);
  BTX_CHECK(head_dim() % 2 == 0, "{}: head dim {} must be even (RoPE rotates pairs)", where,
            head_dim());
  BTX_CHECK(explicit_head_dim <= kMaxWidth, "{}: head_dim {} is above the largest btx takes ({})",
            where, explicit_head_dim, kMaxWidth);
  validate_attention(where);
  BTX_CHECK(num_attention_heads % num_key_value_heads == 0,
            "{}: num_attention_heads {} must be a multiple of num_key_value_heads {}", where,
            num_attention_heads, num_key_value_heads);
  BTX_CHECK(rope_theta > 0 && rms_norm_eps > 0 && initializer_range > 0,
            "{}: rope_theta, rms_norm_eps and initializer_range must be positive", where);
  // Sizes beyond any model btx can hold are refused here, naming the key, before LibTorch is
  // asked for the memory (which takes seconds and gigabytes to fail, naming nothing).
  auto at_most = [&](const char* key, int64_t v, int64_t max) {
    BTX_CHECK(v <= max, "{}: {} {} is above the largest btx takes ({})", where, key, v, max);
  };
  at_most("vocab_size", vocab_size, kMaxVocab);
  at_most("hidden_size", hidden_size, kMaxWidth);
  at_most("intermediate_size", intermediate_size, 4 * kMaxWidth);
  at_most("num_hidden_layers", num_hidden_layers, kMaxLayers);
  at_most("num_attention_heads", num_attention_heads, kMaxWidth);
  at_most("max_position_embeddings", max_position_embeddings, kMaxContext);
  at_most("num_local_experts", num_local_experts, kMaxExperts);
  at_most("num_attention_experts", num_attention_experts, kMaxExperts);
  at_most("num_null_experts", num_null_experts, kMaxExperts);
  const double params = estimated_params(*this);
  BTX_CHECK(params <= kMaxParams,
            "{}: this model would have about {:.3g} parameters ({:.0f} GB in float32), above the "
            "{:.0e} btx takes: reduce hidden_size, intermediate_size, num_hidden_layers, "
            "num_local_experts or vocab_size",
            where, params, params * 4 / 1e9, kMaxParams);
}

namespace {
struct JsonWriter {
  nlohmann::json* j;
  template <typename T>
  void field(const char* key, const T& v) {
    if constexpr (std::is_enum_v<T>) {
      (*j)[key] = name_of(v);
    } else {
      (*j)[key] = v;
    }
  }
};

struct JsonReader {
  const nlohmann::json* j;
  std::string where;
  std::set<std::string> seen;
  template <typename T>
  void field(const char* key, T& v) {
    seen.insert(key);
    auto it = j->find(key);
    if (it == j->end() || it->is_null()) return;
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      // 128.7 is not silently read as 128.
      BTX_CHECK(it->is_number_integer(), "{}: key '{}' must be an integer, got {}", where, key,
                it->dump());
    }
    if constexpr (std::is_enum_v<T>) {
      BTX_CHECK(it->is_string(), "{}: key '{}' has the wrong type ({})", where, key, it->dump());
      const auto name = it->get<std::string>();
      const auto value = find_named<T>(name);
      BTX_CHECK(value.has_value(), "{}: {} '{}' is not supported (expected {})", where, key, name,
                name_alternatives<T>(/*quote=*/true));
      v = *value;
    } else {
      try {
        v = it->get<T>();
      } catch (const nlohmann::json::exception&) {
        fail("{}: key '{}' has the wrong type ({})", where, key, it->dump());
      }
    }
  }
};
}  // namespace

bool ModelConfig::operator==(const ModelConfig& o) const {
  return model_config_to_json(*this) == model_config_to_json(o);
}

std::string model_config_difference(const ModelConfig& a, const ModelConfig& b) {
  const nlohmann::json ja = model_config_to_json(a), jb = model_config_to_json(b);
  std::vector<std::string> out;
  for (const auto& [key, value] : ja.items()) {
    const auto it = jb.find(key);
    if (it == jb.end() || *it != value) {
      out.push_back(fmt::format("{} {} vs {}", key, value.dump(),
                                it == jb.end() ? std::string("none") : it->dump()));
    }
  }
  return fmt::format("{}", fmt::join(out, ", "));
}

nlohmann::json model_config_to_json(const ModelConfig& c) {
  nlohmann::json j = nlohmann::json::object();
  j["architectures"] = {c.has_attention_experts() ? "BtxBamForCausalLM"
                        : c.is_moe()              ? "MixtralForCausalLM"
                        : c.is_smear()            ? "BtxSmearForCausalLM"
                                                  : hf_architecture(c.base_model_type)};
  JsonWriter w{&j};
  const_cast<ModelConfig&>(c).visit(w);
  j["hidden_act"] = "silu";
  j["torch_dtype"] = "float32";
  return j;
}

namespace {
// A Hugging Face config.json's keys in btx's spelling: model_type "qwen3" is base_model_type
// qwen3 with a dense FFN, the rope_scaling object becomes the flat rope_* keys, a list of end
// tokens its first, and the keys that only say "off" (use_sliding_window false, layer_types all
// full attention, rope_interleaved false) are checked and dropped. btx's own config.json passes
// unchanged.
nlohmann::json btx_keys(nlohmann::json j, const std::string& where) {
  if (j.contains("model_type") && j["model_type"].is_string() && !j.contains("base_model_type")) {
    const std::string type = j["model_type"].get<std::string>();
    BTX_CHECK(find_named<BaseModelType>(type) || find_named<ModelType>(type),
              "{}: model_type '{}' is not supported: btx computes {} models (and makes its own "
              "mixtral and smear models from them){}",
              where, type, name_alternatives<BaseModelType>(),
              type.find("moe") != std::string::npos ? "; import the dense base model" : "");
    if (find_named<BaseModelType>(type) && type != "llama") {
      j["base_model_type"] = type;
      j["model_type"] = "llama";
    }
  }
  if (j.contains("rope_scaling")) {
    const nlohmann::json rs = j["rope_scaling"];
    j.erase("rope_scaling");
    if (!rs.is_null()) {
      BTX_CHECK(rs.is_object(), "{}: rope_scaling is {}; expected an object or null", where,
                rs.dump());
      const auto type =
          rs.contains("rope_type") ? rs["rope_type"] : rs.value("type", nlohmann::json());
      BTX_CHECK(type.is_string(), "{}: rope_scaling has no rope_type (got {})", where, rs.dump());
      j["rope_scaling_type"] = type;
      static const std::map<std::string, std::string> kKeys = {
          {"factor", "rope_scaling_factor"},
          {"low_freq_factor", "rope_low_freq_factor"},
          {"high_freq_factor", "rope_high_freq_factor"},
          {"original_max_position_embeddings", "rope_original_max_position_embeddings"}};
      for (const auto& [k, v] : rs.items()) {
        if (k == "rope_type" || k == "type") continue;
        const auto it = kKeys.find(k);
        BTX_CHECK(it != kKeys.end(), "{}: rope_scaling.{} = {} is not supported (btx computes {})",
                  where, k, v.dump(),
                  "factor, low_freq_factor, high_freq_factor and "
                  "original_max_position_embeddings");
        j[it->second] = v;
      }
    }
  }
  if (j.contains("eos_token_id") && j["eos_token_id"].is_array()) {
    const auto list = j["eos_token_id"];
    BTX_CHECK(!list.empty() && list[0].is_number_integer(),
              "{}: eos_token_id is {}; expected an integer or a list of them", where, list.dump());
    j["eos_token_id"] = list[0];  // the tokenizer's end of text ends generation
  }
  if (j.contains("use_sliding_window")) {
    BTX_CHECK(j["use_sliding_window"] == false,
              "{}: use_sliding_window {} is not supported (Qwen's sliding-window layers: btx "
              "computes full attention)",
              where, j["use_sliding_window"].dump());
    j.erase("use_sliding_window");
    j.erase("sliding_window");
    j.erase("max_window_layers");
  }
  if (j.contains("layer_types")) {
    for (const auto& t : j["layer_types"]) {
      BTX_CHECK(t == "full_attention",
                "{}: layer_types holds {}; btx computes full attention in every layer", where,
                t.dump());
    }
    j.erase("layer_types");
  }
  for (const char* off : {"rope_interleaved", "mlp_bias"}) {
    if (!j.contains(off)) continue;
    BTX_CHECK(j[off].is_null() || j[off] == false, "{}: {} {} is not supported", where, off,
              j[off].dump());
    j.erase(off);
  }
  if (j.contains("sliding_window") && j["sliding_window"].is_null()) j.erase("sliding_window");
  if (j.contains("head_dim") && j["head_dim"].is_null()) j.erase("head_dim");
  return j;
}
}  // namespace

ModelConfig model_config_from_json(const nlohmann::json& in, const std::string& where) {
  BTX_CHECK(in.is_object(), "{}: expected a JSON object", where);
  const nlohmann::json j = btx_keys(in, where);
  // The architecture must be stated; only keys HF itself defaults may be left out.
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads"}) {
    BTX_CHECK(j.contains(key), "{}: required key '{}' is missing", where, key);
  }
  ModelConfig c;
  JsonReader r{&j, where, {}};
  c.visit(r);
  if (!j.contains("num_key_value_heads")) c.num_key_value_heads = c.num_attention_heads;  // as HF
  if (!j.contains("tie_word_embeddings")) c.tie_word_embeddings = false;  // HF's default
  // Keys HF writes that carry no architecture we model differently.
  static const std::set<std::string> kIgnored = {
      "architectures",        "torch_dtype",    "dtype",
      "transformers_version", "use_cache",      "pad_token_id",
      "attention_dropout",    "pretraining_tp", "_name_or_path",
      "is_llama_config"};
  for (auto& [k, v] : j.items()) {
    if (r.seen.count(k) || kIgnored.count(k)) continue;
    if (k == "hidden_act") {
      BTX_CHECK(v == "silu", "{}: hidden_act {} is not supported (expected \"silu\")", where,
                v.dump());
      continue;
    }
    fail("{}: unknown config key '{}'", where, k);
  }
  c.validate(where);
  return c;
}

}  // namespace btx
