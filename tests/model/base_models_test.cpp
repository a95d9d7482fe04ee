// The base architectures btx computes (llama, mistral, qwen2, qwen3) and Hugging Face's configs
// of them: the real configs of Llama 3.2 1B, SmolLM2 135M, Mistral 7B, Qwen2.5 0.5B and Qwen3
// 0.6B read into what they mean, every key that changes the computation and is not implemented
// refused by name; Llama 3's rope scaling against hand-computed frequencies; each base's
// attention (biases, q/k norms, explicit head_dim) with its Hugging Face tensor names, fresh
// biases at zero, incremental decoding equal to the full forward, and Mistral's sliding window
// refused where a sequence would pass it.
#include <gtest/gtest.h>

#include <cmath>

#include "btx/model/config.h"
#include "btx/model/llama.h"
#include "model_util.h"
#include "test_util.h"

namespace btx {
namespace {

using nlohmann::json;

const json kLlama32 = json::parse(R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 64,
  "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
  "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16,
  "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256})");

const json kSmolLM2 = json::parse(R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 576,
  "initializer_range": 0.041666666666666664, "intermediate_size": 1536, "is_llama_config": true,
  "max_position_embeddings": 8192, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_interleaved": false, "rope_scaling": null,
  "rope_theta": 100000, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.42.3", "use_cache": true, "vocab_size": 49152})");

const json kMistral7B = json::parse(R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0",
  "use_cache": true, "vocab_size": 32000})");

const json kQwen25 = json::parse(R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24,
  "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936})");

const json kQwen3 = json::parse(R"({
  "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
  "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
  "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
  "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})");

TEST(BaseModels, RealHuggingFaceConfigsReadAsTheyMean) {
  const ModelConfig llama = model_config_from_json(kLlama32, "llama");
  EXPECT_EQ(llama.base_model_type, BaseModelType::kLlama);
  EXPECT_EQ(llama.head_dim(), 64);
  EXPECT_EQ(llama.rope_scaling_type, "llama3");
  EXPECT_EQ(llama.rope_scaling_factor, 32.0);
  EXPECT_EQ(llama.rope_original_max_position_embeddings, 8192);
  EXPECT_EQ(llama.eos_token_id, 128001);  // the first of the list
  EXPECT_FALSE(llama.qkv_bias());

  const ModelConfig smol = model_config_from_json(kSmolLM2, "smollm2");
  EXPECT_EQ(smol.head_dim(), 64);
  EXPECT_EQ(smol.num_key_value_heads, 3);
  EXPECT_TRUE(smol.rope_scaling_type.empty());

  const ModelConfig mistral = model_config_from_json(kMistral7B, "mistral");
  EXPECT_EQ(mistral.base_model_type, BaseModelType::kMistral);
  EXPECT_EQ(mistral.sliding_window, 4096);
  EXPECT_EQ(mistral.max_sequence(), 4096);
  EXPECT_FALSE(mistral.tie_word_embeddings);

  const ModelConfig qwen2 = model_config_from_json(kQwen25, "qwen2.5");
  EXPECT_EQ(qwen2.base_model_type, BaseModelType::kQwen2);
  EXPECT_TRUE(qwen2.qkv_bias());
  EXPECT_FALSE(qwen2.o_bias());
  EXPECT_EQ(qwen2.sliding_window, 0);  // use_sliding_window false: full attention
  EXPECT_EQ(qwen2.max_sequence(), 32768);

  const ModelConfig qwen3 = model_config_from_json(kQwen3, "qwen3");
  EXPECT_EQ(qwen3.base_model_type, BaseModelType::kQwen3);
  EXPECT_EQ(qwen3.head_dim(), 128);  // 16 heads of 128 in a 1024-wide model
  EXPECT_TRUE(qwen3.qk_norm());
  EXPECT_FALSE(qwen3.qkv_bias());

  // btx's own config.json of each reads back as the same config.
  for (const ModelConfig& c : {llama, smol, mistral, qwen2, qwen3}) {
    EXPECT_EQ(model_config_from_json(model_config_to_json(c), "round trip"), c)
        << name_of(c.base_model_type);
  }
  EXPECT_EQ(model_config_to_json(qwen3)["architectures"][0], "Qwen3ForCausalLM");
}

TEST(BaseModels, KeysThatChangeTheComputationAreRefusedByName) {
  auto refused = [](json j, const std::string& key, const json& value) {
    if (value.is_null()) {
      j.erase(key);
    } else {
      j[key] = value;
    }
    return testing::error_of([&] { model_config_from_json(j, "config.json"); });
  };
  auto has = [](const std::string& msg, const std::string& part) {
    return msg.find(part) != std::string::npos;
  };
  json yarn = kLlama32["rope_scaling"];
  yarn["rope_type"] = "yarn";
  EXPECT_TRUE(has(refused(kLlama32, "rope_scaling", yarn), "rope_scaling type 'yarn'"));
  json extra = kLlama32["rope_scaling"];
  extra["beta_fast"] = 32;
  EXPECT_TRUE(has(refused(kLlama32, "rope_scaling", extra), "rope_scaling.beta_fast"));
  EXPECT_TRUE(has(refused(kQwen25, "use_sliding_window", true), "use_sliding_window"));
  EXPECT_TRUE(has(refused(kQwen3, "layer_types", {"full_attention", "sliding_attention"}),
                  "sliding_attention"));
  EXPECT_TRUE(has(refused(kQwen3, "model_type", "gemma"), "model_type 'gemma'"));
  EXPECT_TRUE(has(refused(kQwen3, "model_type", "qwen3_moe"), "import the dense base model"));
  EXPECT_TRUE(has(refused(kQwen25, "attention_bias", true), "always has q/k/v biases"));
  EXPECT_TRUE(has(refused(kLlama32, "sliding_window", 4096), "sliding_window 4096"));
  EXPECT_TRUE(has(refused(kSmolLM2, "rope_interleaved", true), "rope_interleaved"));
  EXPECT_TRUE(has(refused(kSmolLM2, "mlp_bias", true), "mlp_bias"));
  EXPECT_TRUE(has(refused(kQwen25, "rope_scaling", kLlama32["rope_scaling"]),
                  "rope_scaling llama3 is Llama 3's"));
  EXPECT_TRUE(has(refused(kMistral7B, "hidden_act", "gelu"), "hidden_act"));
  EXPECT_TRUE(has(refused(kMistral7B, "partial_rotary_factor", 0.5), "partial_rotary_factor"));
}

TEST(BaseModels, Llama3RopeScalingHandComputed) {
  // D 8, base 10000: frequencies 1, 0.1, 0.01, 0.001 (wavelengths 2π, 20π, 200π, 2000π).
  // original 1000, low 1, high 4: wavelengths below 250 kept, above 1000 / factor 8, between a
  // ramp with smooth = (1000 / wavelength - 1) / 3.
  RopeSpec spec{8, 10000.0, "llama3", 8.0, 1.0, 4.0, 1000};
  const auto f = spec.inv_freq();
  const double smooth = (1000.0 / (200 * M_PI) - 1) / 3;
  const std::vector<double> want = {1.0, 0.1, (1 - smooth) * 0.01 / 8 + smooth * 0.01, 0.001 / 8};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(f[i].item<double>(), want[i], 1e-12) << i;
  spec.scaling = "linear";
  EXPECT_NEAR(spec.inv_freq()[1].item<double>(), 0.1 / 8, 1e-15);
}

// A config of each base, 16 wide with 4 heads over 2 key/value heads.
ModelConfig base_config(BaseModelType base) {
  ModelConfig c = testing::small_model_config(40, 16, 24, 2, 4, 2, 32);
  c.base_model_type = base;
  if (base == BaseModelType::kQwen3) {
    c.explicit_head_dim = 8;  // 4 heads of 8 in a 16-wide model
    c.attention_bias = true;  // every projection biased
  }
  if (base == BaseModelType::kLlama) {
    c.rope_scaling_type = "llama3";
    c.rope_scaling_factor = 4;
    c.rope_original_max_position_embeddings = 8;
  }
  if (base == BaseModelType::kMistral) c.sliding_window = 12;
  c.validate("test");
  return c;
}

TEST(BaseModels, EachBaseHasHuggingFacesTensorsAndDecodesIncrementallyAsAWhole) {
  torch::NoGradGuard ng;
  for (auto base : {BaseModelType::kLlama, BaseModelType::kMistral, BaseModelType::kQwen2,
                    BaseModelType::kQwen3}) {
    SCOPED_TRACE(name_of(base));
    const ModelConfig c = base_config(base);
    torch::manual_seed(4);
    CausalLM m(c);
    auto params = m->named_parameters();
    const std::string at = "model.layers.1.self_attn.";
    EXPECT_EQ(params.contains(at + "q_proj.bias"), c.qkv_bias());
    EXPECT_EQ(params.contains(at + "o_proj.bias"), c.o_bias());
    EXPECT_EQ(params.contains(at + "q_norm.weight"), c.qk_norm());
    EXPECT_EQ(params[at + "q_proj.weight"].sizes(), (std::vector<int64_t>{4 * c.head_dim(), 16}));
    if (c.qkv_bias()) EXPECT_EQ(params[at + "k_proj.bias"].abs().sum().item<double>(), 0.0);
    if (c.qk_norm()) EXPECT_TRUE(torch::equal(params[at + "k_norm.weight"], torch::ones({8})));
    // Biases and norms that are not their fresh values, so that their place shows.
    for (auto& p : params) {
      if (p.value().dim() == 1) p.value().normal_(0.5, 0.5);
    }
    m->eval();
    const auto ids = torch::randint(0, 40, {2, 12}, torch::kInt64);
    const auto whole = m->forward(ids);
    KVCache cache;
    const auto first = m->forward_cached(ids.narrow(1, 0, 7), cache);
    const auto rest = m->forward_cached(ids.narrow(1, 7, 5), cache);
    EXPECT_TRUE(torch::allclose(torch::cat({first, rest}, 1), whole, 1e-5, 1e-5));
  }
}

TEST(BaseModels, MistralRefusesASequenceLongerThanItsSlidingWindow) {
  CausalLM m(base_config(BaseModelType::kMistral));  // window 12, 32 positions
  const auto ids = torch::zeros({1, 13}, torch::kInt64);
  try {
    m->forward(ids);
    ADD_FAILURE() << "a 13-token sequence ran in a 12-token window";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("sliding_window 12"), std::string::npos) << e.what();
  }
  EXPECT_EQ(m->forward(ids.narrow(1, 0, 12)).size(1), 12);
}

}  // namespace
}  // namespace btx
