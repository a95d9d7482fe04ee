#include "btx/model/config.h"

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
  const double KV = static_cast<double>(c.num_key_value_heads), D = C / H;
  const double attn = C * (H * D) * 2 + C * (KV * D) * 2;
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

const RouterTraits& ModelConfig::router() const {
  BTX_CHECK(is_routed(), "model_type '{}' has no router", name_of(model_type));
  return router_traits(model_type, router_mode, "model config");
}

bool ModelConfig::is_causal() const {
  return !is_routed() || router().causal;
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
  }
  BTX_CHECK(num_attention_experts >= 0, "{}: num_attention_experts must be >= 0, got {}", where,
            num_attention_experts);
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("max_position_embeddings", max_position_embeddings);
  BTX_CHECK(hidden_size % num_attention_heads == 0,
            "{}: hidden_size {} must be divisible by num_attention_heads {}", where, hidden_size,
            num_attention_heads);
  BTX_CHECK(head_dim() % 2 == 0,
            "{}: head dim hidden_size/num_attention_heads = {} must be even "
            "(RoPE rotates pairs)",
            where, head_dim());
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
                                                  : "LlamaForCausalLM"};
  JsonWriter w{&j};
  const_cast<ModelConfig&>(c).visit(w);
  j["hidden_act"] = "silu";
  j["torch_dtype"] = "float32";
  return j;
}

ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& where) {
  BTX_CHECK(j.is_object(), "{}: expected a JSON object", where);
  // The architecture must be stated; only keys HF itself defaults may be left out.
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads"}) {
    BTX_CHECK(j.contains(key), "{}: required key '{}' is missing", where, key);
  }
  ModelConfig c;
  JsonReader r{&j, where, {}};
  c.visit(r);
  if (!j.contains("num_key_value_heads")) c.num_key_value_heads = c.num_attention_heads;  // as HF
  // Keys HF writes that carry no architecture we model differently.
  static const std::set<std::string> kIgnored = {
      "architectures",     "torch_dtype",  "transformers_version",
      "use_cache",         "pad_token_id", "attention_bias",
      "attention_dropout", "mlp_bias",     "pretraining_tp",
      "rope_scaling",      "head_dim",     "_name_or_path",
      "bos_token_id",      "eos_token_id"};
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
