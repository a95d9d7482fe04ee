// Run and model configs: defaults, unknown keys and wrong types named, resolved round trip.
#include <gtest/gtest.h>

#include "btx/config/run_config.h"
#include "btx/util/error.h"

namespace btx {
namespace {

std::string error_of(const std::string& toml) {
  try {
    parse_run_config(toml, "cfg.toml");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(RunConfig, DefaultsAndVocabFromTokenizer) {
  auto c = parse_run_config("name = \"x\"\n[tokenizer]\nvocab_size = 512\n", "cfg.toml");
  EXPECT_EQ(c.name, "x");
  EXPECT_EQ(c.model.vocab_size, 512);
  EXPECT_EQ(c.seed_train.steps, TrainConfig{}.steps);
}

TEST(RunConfig, UnknownKeysAreNamed) {
  EXPECT_NE(error_of("[model]\nhiden_size = 3\n").find("model.hiden_size"), std::string::npos);
  EXPECT_NE(error_of("bogus = 1\n").find("'bogus'"), std::string::npos);
  EXPECT_NE(error_of("[seed]\nlr = \"fast\"\n").find("seed.lr"), std::string::npos);
  EXPECT_NE(error_of("[model]\nhidden_size = 30\nnum_attention_heads = 4\n").find("divisible"),
            std::string::npos);
  EXPECT_NE(error_of("format_version = 7\n").find("newer btx"), std::string::npos);
  EXPECT_NE(error_of("[seed\n").find("cfg.toml:1"), std::string::npos);
  EXPECT_NE(error_of("[seed]\nseq_len = 999\n").find("max_position_embeddings"), std::string::npos);
}

TEST(RunConfig, ExpertModesAndStudiedModesAreChecked) {
  EXPECT_EQ(error_of("[experts]\nmode = \"attn\"\n"),
            "cfg.toml experts.mode: 'attn' is not one of all, ffn, flexolmo");
  EXPECT_EQ(error_of("[study]\nmodes = [\"ffn\", \"moe\"]\n"),
            "cfg.toml study.modes[1]: 'moe' is not one of all, ffn, flexolmo");
  EXPECT_EQ(error_of("[study]\nmodes = [\"all\"]\n"),
            "cfg.toml study.modes[0]: 'all' is the main experts' mode ([experts] mode): its rows "
            "are the study's own");
  EXPECT_EQ(error_of("[study]\nmodes = [\"ffn\", \"ffn\"]\n"),
            "cfg.toml study.modes[1]: 'ffn' appears twice");
  EXPECT_EQ(error_of("[study]\nmodes = [\"ffn\", \"flexolmo\"]\n"), "");
}

TEST(RunConfig, ResolvedTomlRoundTrips) {
  auto c = parse_run_config(
      "name = \"r\"\nrandom_seed = 7\n[corpus]\ndomains = [\"a\", \"b\"]\n[seed]\nsteps = 12\n"
      "domain_weights = { a = 0.25, b = 0.75 }\n[model]\nnum_key_value_heads = 2\n",
      "cfg.toml");
  const std::string text = run_config_to_toml(c);
  auto back = parse_run_config(text, "resolved.toml");
  EXPECT_EQ(run_config_to_toml(back), text);
  EXPECT_EQ(back.corpus.domains, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(back.seed_train.domain_weights.at("b"), 0.75);
  EXPECT_EQ(back.seed, 7u);
  EXPECT_EQ(back.model, c.model);
}

// Found by the fuzz target: a string starting with a newline (or holding one) was written in a
// form that reads back as another string, or does not read back at all.
TEST(RunConfig, StringsWithNewlinesQuotesAndBackslashesRoundTrip) {
  auto c = parse_run_config(
      "name = 'r'\n[study]\nsweep = [\"\\nabc\", \"a\\nb\", 'c:\\d', \"q\\\"\"]\n", "cfg.toml");
  ASSERT_EQ(c.study.sweep, (std::vector<std::string>{"\nabc", "a\nb", "c:\\d", "q\""}));
  const auto back = parse_run_config(run_config_to_toml(c), "resolved.toml");
  EXPECT_EQ(back.study.sweep, c.study.sweep);
  EXPECT_TRUE(differing_keys(c, back).empty());
}

// Also found by fuzzing: floats were written with 6 digits, so 4444440.1 read back as 4444440.
// Short floats stay short.
TEST(RunConfig, FloatsReadBackExactlyAndStayShortWhenTheyCan) {
  auto c = parse_run_config("name = 'r'\n[seed]\nweight_decay = 4444440.1\nlr = 0.1\n", "cfg.toml");
  std::string text = run_config_to_toml(c);
  EXPECT_EQ(parse_run_config(text, "resolved.toml").seed_train.weight_decay, 4444440.1) << text;
  c = parse_run_config("name = 'r'\n[seed]\nlr = 0.1\n", "cfg.toml");
  text = run_config_to_toml(c);
  EXPECT_NE(text.find("lr = 0.1\n"), std::string::npos) << text;
}

// A few zeros too many ran for minutes before LibTorch's allocator failed naming nothing.
TEST(RunConfig, AbsurdTrainingSizesAreNamedBeforeAnythingRuns) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[seed]\nbatch_size = 100000000\n",
       "[seed]: batch_size = 100000000 is above the maximum 65536"},
      {"[experts.train]\nsteps = 10000000000\n", "steps = 10000000000 is above the maximum"},
      {"[seed]\nbatch_size = 4096\nseq_len = 4096\n",
       "batch_size x seq_len = 4096 x 4096 = 16777216 tokens per micro-batch"},
      {"[seed]\nlr = inf\n", "lr must be a finite number, got inf"},
      {"[seed]\nbatch_size = 1e8\n", "key 'seed.batch_size' must be an integer"},
  };
  for (const auto& [text, message] : cases) {
    std::string error;
    try {
      parse_run_config("name = 'r'\n" + text, "cfg.toml");
    } catch (const Error& e) {
      error = e.what();
    }
    EXPECT_NE(error.find(message), std::string::npos) << text << " -> " << error;
  }
}

TEST(RunConfig, EveryPresetInTheRepoLoads) {
  // The presets users copy (configs/*.toml): each must load, name its domains and fit its model.
  int presets = 0;
  for (const auto& f : fs::directory_iterator(fs::path(BTX_SOURCE_DIR) / "configs")) {
    if (f.path().extension() != ".toml") continue;
    ++presets;
    const RunConfig c = load_run_config(f.path());
    EXPECT_FALSE(c.corpus.domains.empty()) << f.path();
    EXPECT_LE(c.seed_train.seq_len, c.model.max_position_embeddings) << f.path();
    EXPECT_LE(c.experts.train.seq_len, c.model.max_position_embeddings) << f.path();
    EXPECT_LE(c.finetune.seq_len, c.model.max_position_embeddings) << f.path();
  }
  EXPECT_GE(presets, 2);  // tiny and small
}

TEST(ModelConfig, JsonRoundTripAndHuggingFaceKeys) {
  ModelConfig c;
  c.vocab_size = 100;
  auto j = model_config_to_json(c);
  EXPECT_EQ(j["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(j["num_key_value_heads"], c.num_key_value_heads);
  EXPECT_EQ(model_config_from_json(j, "config.json"), c);
  j["transformers_version"] = "4.40";  // written by HF: ignored
  EXPECT_NO_THROW(model_config_from_json(j, "config.json"));
  auto no_kv = j;
  no_kv.erase("num_key_value_heads");  // HF's default: one key/value head per query head
  EXPECT_EQ(model_config_from_json(no_kv, "config.json").num_key_value_heads,
            c.num_attention_heads);
  auto missing = j;
  missing.erase("hidden_size");
  try {
    model_config_from_json(missing, "config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'hidden_size' is missing"), std::string::npos);
  }
  j["hidden_act"] = "gelu";
  EXPECT_THROW(model_config_from_json(j, "config.json"), Error);
}

// Values that would be truncated, or sizes no machine holds, are refused with the key named,
// before any allocation.
TEST(ModelConfig, FractionsAndAbsurdSizesAreNamed) {
  ModelConfig c;
  c.vocab_size = 100;
  const auto good = model_config_to_json(c);
  auto message = [&](const char* key, const nlohmann::json& v) {
    auto j = good;
    j[key] = v;
    try {
      model_config_from_json(j, "config.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message("hidden_size", 128.7)
                .find("config.json: key 'hidden_size' must be an integer, "
                      "got 128.7"),
            std::string::npos);
  EXPECT_NE(message("hidden_size", "128").find("key 'hidden_size'"), std::string::npos);
  EXPECT_NE(
      message("num_hidden_layers", 1000000)
          .find("config.json: num_hidden_layers 1000000 is above the largest btx takes (1024)"),
      std::string::npos);
  EXPECT_NE(message("hidden_size", int64_t{1} << 30).find("hidden_size 1073741824 is above"),
            std::string::npos);
  EXPECT_NE(message("vocab_size", int64_t{1} << 40).find("vocab_size 1099511627776 is above"),
            std::string::npos);
  // Each size allowed, the whole too large: 65536 wide, 1024 layers.
  auto j = good;
  j["hidden_size"] = 65536;
  j["num_attention_heads"] = 512;
  j["num_key_value_heads"] = 512;
  j["intermediate_size"] = 65536;
  j["num_hidden_layers"] = 1024;
  try {
    model_config_from_json(j, "config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("parameters"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace btx
