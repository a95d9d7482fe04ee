// btx models in the tools people run them with, each tested against the real third-party
// software (tests/node: npm packages at pinned versions, installed by scripts/test.sh):
//  - GGUF exports, dense and MoE, loaded by llama.cpp (node-llama-cpp's prebuilt binaries): the
//    same token ids for a set of texts, the same greedy continuations as `btx generate`, and the
//    same per-token log-probabilities as btx's forward pass;
//  - the HF export's tokenizer.json read by Hugging Face's tokenizer (@huggingface/tokenizers, as
//    in transformers.js): the same ids as btx, and decoding gives the text back;
//  - the chat template's Jinja rendered by Hugging Face's Jinja gives btx's rendering.
#include <gtest/gtest.h>

#include "btx/data/chat_template.h"
#include "btx/data/tokenizer.h"
#include "btx/generate/decoder.h"
#include "btx/generate/generate.h"
#include "btx/io/gguf.h"
#include "btx/io/safetensors.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "e2e_util.h"
#include "forest_fixture.h"
#include "node_util.h"

namespace btx::testing {
namespace {

struct InteropSuite {};
using InteropTest = ForestTest<InteropSuite>;

// Texts that tokenizers get wrong in different ways: code and its indentation, runs of spaces
// and newlines, tabs, digits, accents, emoji, CJK, a text that starts with a space.
const std::vector<std::string> kTexts = {
    "Hello world",
    "def f(x):\n    return x + 1\n\n\nclass  A:\n\tpass",
    "  two  spaces   three    four\n\n",
    "12345 + 67.890 = 3.14159e-10",
    "caf\xC3\xA9 na\xC3\xAFve \xC3\x85ngstr\xC3\xB6m \xC3\xB1"
    "and\xC3\xBA",
    "emoji \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD end",
    "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE6\x96\x87 \xE4\xB8\xAD\xE6\x96\x87 "
    "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",
    " leading space, trailing space ",
    "the quick brown fox jumps over the lazy dog. THE END!",
};
const std::vector<std::string> kPrompts = {"The ", "def main", "In the beginning"};
constexpr int kNewTokens = 8;

// What llama.cpp makes of a GGUF export of `model`: token ids of kTexts, greedy continuations of
// kPrompts, and the scores of each prompt with btx's continuation.
LlamaCppRun run_llama_cpp(const RunDir& run, const fs::path& model_dir, const fs::path& gguf,
                          const Tokenizer& tok) {
  return testing::run_llama_cpp(model_dir, gguf, tok, kTexts, kPrompts, kNewTokens, run.root);
}

TEST_F(InteropTest, GgufExportsRunInLlamaCppExactlyAsInBtx) {
  const RunDir run = fresh_run("gguf");
  const std::string R = run.root.string();
  auto r = run_btx("merge --run " + R + " --method btx");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_btx("finetune --run " + R + " --model merged/btx");  // routers that are not random
  ASSERT_EQ(r.code, 0) << r.output;
  const Tokenizer tok = Tokenizer::load(run.tokenizer_file());
  for (const std::string model : {"seed", "merged/btx"}) {
    SCOPED_TRACE(model);
    const fs::path gguf = run.root / (model == "seed" ? "seed.gguf" : "btx.gguf");
    r = run_btx("export --run " + R + " --model " + model + " --format gguf --out " +
                gguf.string());
    ASSERT_EQ(r.code, 0) << r.output;
    const auto lc = run_llama_cpp(run, run.root / model, gguf, tok);
    ASSERT_FALSE(lc.out.is_null());
    EXPECT_EQ(lc.out["metadata"]["architecture"], "llama");
    EXPECT_EQ(lc.out["metadata"]["expert_count"], model == "seed" ? 0 : 3);
    EXPECT_EQ(lc.out["metadata"]["expert_used_count"], model == "seed" ? 0 : 2);
    for (size_t i = 0; i < kTexts.size(); ++i) {
      EXPECT_EQ(ids_of(lc.out["tokens"][i]), tok.encode(kTexts[i])) << "text: " << kTexts[i];
    }
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      EXPECT_EQ(ids_of(lc.out["continuations"][i]["tokens"]), lc.btx_greedy[i])
          << "prompt: " << kPrompts[i];
      // Every position's log-probability, btx's forward pass against llama.cpp's.
      EXPECT_LT(max_abs_diff(btx_scores(run.root / model, lc.sequences[i]), lc.out["scores"][i]),
                1e-4)
          << "prompt: " << kPrompts[i];
    }
  }
}

TEST_F(InteropTest, GgufFilesHoldTheModelTheTokenizerAndTheMetadata) {
  const RunDir run = fresh_run("gguf-files");
  const std::string R = run.root.string();
  auto r = run_btx("merge --run " + R + " --method btx");
  ASSERT_EQ(r.code, 0) << r.output;
  const Tokenizer tok = Tokenizer::load(run.tokenizer_file());
  r = run_btx("export --run " + R + " --model merged/btx --format gguf --name my-moe --out " + R +
              "/f32.gguf");
  ASSERT_EQ(r.code, 0) << r.output;
  const GgufFile f = read_gguf(run.root / "f32.gguf");
  const auto& m = f.metadata;
  EXPECT_EQ(m["general.architecture"], "llama");
  EXPECT_EQ(m["general.name"], "my-moe");
  EXPECT_EQ(m["general.file_type"], 0);
  EXPECT_EQ(m["btx.merge.method"], "btx");
  const auto manifest = read_json_file(run.root / "merged/btx/merge.json");
  ASSERT_EQ(m["general.base_model.count"], manifest["experts"].size());
  for (size_t i = 0; i < manifest["experts"].size(); ++i) {
    EXPECT_EQ(m[fmt::format("general.base_model.{}.name", i)], manifest["experts"][i]["name"]);
  }
  EXPECT_EQ(m["llama.expert_count"], 3);
  EXPECT_EQ(m["llama.block_count"], 2);
  EXPECT_EQ(m["llama.attention.head_count_kv"], 2);
  EXPECT_EQ(m["tokenizer.ggml.add_space_prefix"], false);
  EXPECT_EQ(m["tokenizer.ggml.add_bos_token"], false);
  EXPECT_EQ(m["tokenizer.chat_template"], builtin_chat_template("plain").jinja());
  ASSERT_EQ(m["tokenizer.ggml.tokens"].size(), static_cast<size_t>(tok.vocab_size()));
  for (int id = 0; id < tok.vocab_size(); ++id) {
    ASSERT_EQ(m["tokenizer.ggml.tokens"][id], tok.piece(id));
    ASSERT_EQ(m["tokenizer.ggml.token_type"][id], tok.piece_type(id));
  }
  // The weights: exact in f32, Q and K in GGML's rotary order, experts stacked, no output
  // matrix for tied embeddings.
  const TensorMap w = load_safetensors(run.root / "merged/btx/model.safetensors").tensors;
  EXPECT_TRUE(torch::equal(f.tensors.at("token_embd.weight"), w.at("model.embed_tokens.weight")));
  EXPECT_FALSE(f.tensors.count("output.weight"));
  const auto q = f.tensors.at("blk.1.attn_q.weight");  // [4 heads * 12, 48]
  const auto hf_q = w.at("model.layers.1.self_attn.q_proj.weight");
  for (int64_t h = 0; h < 4; ++h) {
    for (int64_t i = 0; i < 6; ++i) {  // GGML row 2i, 2i+1 of a head = HF rows i, i + D/2
      EXPECT_TRUE(torch::equal(q[h * 12 + 2 * i], hf_q[h * 12 + i]));
      EXPECT_TRUE(torch::equal(q[h * 12 + 2 * i + 1], hf_q[h * 12 + 6 + i]));
    }
  }
  const auto k = f.tensors.at("blk.0.attn_k.weight");  // 2 KV heads
  EXPECT_TRUE(torch::equal(k[12 + 1], w.at("model.layers.0.self_attn.k_proj.weight")[12 + 6]));
  EXPECT_TRUE(torch::equal(f.tensors.at("blk.0.ffn_down_exps.weight")[2],
                           w.at("model.layers.0.block_sparse_moe.experts.2.w2.weight")));
  EXPECT_TRUE(torch::equal(f.tensors.at("blk.0.ffn_gate_inp.weight"),
                           w.at("model.layers.0.block_sparse_moe.gate.weight")));

  // f16 and bf16: matrices rounded, norms and routers kept in f32.
  for (const std::string d : {"f16", "bf16"}) {
    r = run_btx("export --run " + R + " --model merged/btx --format gguf --dtype " + d + " --out " +
                R + "/" + d + ".gguf");
    ASSERT_EQ(r.code, 0) << r.output;
    const GgufFile g = read_gguf(run.root / (d + ".gguf"));
    EXPECT_EQ(g.metadata["general.file_type"], d == "f16" ? 1 : 32);
    EXPECT_EQ(gguf_type_name(g.types.at("blk.0.attn_v.weight")), d);
    EXPECT_EQ(g.types.at("blk.0.ffn_gate_inp.weight"), GgufType::kF32);
    EXPECT_EQ(g.types.at("output_norm.weight"), GgufType::kF32);
    const auto& a = g.tensors.at("blk.0.ffn_up_exps.weight");
    const auto& b = f.tensors.at("blk.0.ffn_up_exps.weight");
    EXPECT_LT(((a - b).abs() / b.abs().clamp_min(1e-3)).max().item<double>(),
              d == "f16" ? 1e-3 : 1e-2);
  }

  // q8_0 needs rows of a multiple of 32 values: this model's are 48 wide. Refused, no file.
  r = run_btx("export --run " + R + " --model seed --format gguf --dtype q8_0 --out " + R +
              "/q8.gguf");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("token_embd.weight has rows of 48 values, which q8_0 cannot hold"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(run.root / "q8.gguf"));
  // An unknown dtype, an existing file, models that are not one GGUF model: refused.
  r = run_btx("export --run " + R + " --model seed --format gguf --dtype q4_k --out " + R +
              "/x.gguf");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("--dtype 'q4_k': a GGUF is written in f32, f16, bf16 or q8_0"),
            std::string::npos)
      << r.output;
  r = run_btx("export --run " + R + " --model seed --format gguf --out " + R + "/f32.gguf");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("f32.gguf exists"), std::string::npos) << r.output;
  for (const std::string method : {"ensemble", "smear"}) {
    ASSERT_EQ(run_btx("merge --run " + R + " --method " + method).code, 0);
    r = run_btx("export --run " + R + " --model merged/" + method + " --format gguf --out " + R +
                "/" + method + ".gguf");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.output.find(method == "ensemble" ? "is a BTM ensemble" : "is a SMEAR model"),
              std::string::npos)
        << r.output;
    EXPECT_FALSE(fs::exists(run.root / (method + ".gguf")));
  }
}

TEST_F(InteropTest, Q8GgufOfAWiderModelScoresCloseToBtxInLlamaCpp) {
  // A model 64 wide (q8_0's blocks of 32 fit), random weights, with the run's tokenizer.
  const RunDir run = fresh_run("q8");
  const Tokenizer tok = Tokenizer::load(run.tokenizer_file());
  ModelConfig c = load_model_config(run.seed());
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.tie_word_embeddings = false;  // an output matrix of its own
  torch::manual_seed(3);
  CausalLM model(c);
  {
    torch::NoGradGuard g;
    for (auto& p : model->parameters()) p.normal_(0, 0.2);  // peaked, not flat, distributions
  }
  TrainState state;
  state.done = true;
  const fs::path dir = run.root / "merged" / "wide";
  save_checkpoint(dir, {&model, nullptr, &state, {}});
  for (const std::string d : {"f32", "q8_0"}) {
    auto r = run_btx("export --run " + run.root.string() + " --model merged/wide --format gguf " +
                     "--dtype " + d + " --out " + (run.root / (d + ".gguf")).string());
    ASSERT_EQ(r.code, 0) << r.output;
  }
  const GgufFile q8 = read_gguf(run.root / "q8_0.gguf");
  EXPECT_EQ(q8.types.at("output.weight"), GgufType::kQ8_0);
  EXPECT_EQ(q8.types.at("token_embd.weight"), GgufType::kQ8_0);
  EXPECT_EQ(q8.types.at("blk.0.attn_norm.weight"), GgufType::kF32);
  const auto f32 = run_llama_cpp(run, dir, run.root / "f32.gguf", tok);
  const auto q = run_llama_cpp(run, dir, run.root / "q8_0.gguf", tok);
  ASSERT_FALSE(f32.out.is_null());
  ASSERT_FALSE(q.out.is_null());
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    const auto ours = btx_scores(dir, f32.sequences[i]);
    EXPECT_EQ(ids_of(f32.out["continuations"][i]["tokens"]), f32.btx_greedy[i]);
    EXPECT_LT(max_abs_diff(ours, f32.out["scores"][i]), 1e-4);
    // 8-bit weights: each log-probability within a few hundredths of a nat.
    EXPECT_LT(max_abs_diff(ours, q.out["scores"][i]), 0.1) << "prompt: " << kPrompts[i];
  }
}

TEST_F(InteropTest, TokenizerJsonTokenizesAsBtxInHuggingFacesTokenizer) {
  const RunDir run = fresh_run("tokenizer-json");
  const fs::path dir = run.root / "hf";
  auto r = run_btx("export --run " + run.root.string() + " --model seed --out " + dir.string());
  ASSERT_EQ(r.code, 0) << r.output;
  const auto cfg = read_json_file(dir / "tokenizer_config.json");
  EXPECT_EQ(cfg["add_prefix_space"], false);
  EXPECT_EQ(cfg["add_bos_token"], false);
  EXPECT_EQ(cfg["legacy"], true);
  const Tokenizer tok = Tokenizer::load(run.tokenizer_file());
  std::vector<std::string> texts = kTexts;
  // Longer real text: a few hundred bytes of each of the corpus's domains.
  for (const auto& e : fs::directory_iterator(run.root.parent_path() / "corpus")) {
    texts.push_back(read_file(e.path()).substr(1000, 600));
  }
  const auto out =
      run_node("hf_tokenizer.mjs", {{"dir", dir.string()}, {"texts", texts}}, run.root);
  ASSERT_FALSE(out.is_null());
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(ids_of(out["ids"][i]), tok.encode(texts[i])) << "text: " << texts[i];
    EXPECT_EQ(out["decoded"][i], texts[i]);
  }
}

TEST_F(InteropTest, ChatTemplatesRenderTheSameInHuggingFacesJinja) {
  const RunDir run = fresh_run("jinja");
  // A template file with every character a Jinja string literal must escape.
  write_text(run.root / "odd.json",
             nlohmann::json{{"roles",
                             {{"user", {{"prefix", "[Q] 'it' \"s\"\\n\t"}, {"suffix", "\n--\n"}}},
                              {"assistant", {{"prefix", "{{ A }}: "}, {"suffix", "\r\n"}}}}},
                            {"generation_prompt", "{% A %}:"},
                            {"stop", {"[Q]"}}}
                 .dump());
  const std::vector<ChatMessage> conv = {{"system", "Be brief."},
                                         {"user", "What's 2+2?\nSay it."},
                                         {"assistant", "4 {{ x }} \\o/"},
                                         {"user", "Thanks \xF0\x9F\x98\x80"}};
  for (const std::string name :
       std::vector<std::string>{"plain", "chatml", (run.root / "odd.json").string()}) {
    SCOPED_TRACE(name);
    const ChatTemplate t = load_chat_template(name);
    std::vector<ChatMessage> messages = conv;
    if (!t.roles.count("system")) messages.erase(messages.begin());
    nlohmann::json m = nlohmann::json::array();
    for (const auto& x : messages) m.push_back({{"role", x.role}, {"content", x.content}});
    const auto out = run_node("jinja.mjs",
                              {{"template", t.jinja()},
                               {"cases",
                                {{{"messages", m}, {"add_generation_prompt", true}},
                                 {{"messages", m}, {"add_generation_prompt", false}},
                                 {{"messages", {{{"role", "robot"}, {"content", "x"}}}},
                                  {"add_generation_prompt", false}}}}},
                              run.root);
    ASSERT_FALSE(out.is_null());
    EXPECT_EQ(out["rendered"][0], t.render(messages, true));
    EXPECT_EQ(out["rendered"][1], t.render(messages, false));
    EXPECT_NE(out["rendered"][2].value("error", "").find("unknown role: robot"), std::string::npos)
        << out["rendered"][2];
    EXPECT_THROW(t.render({{"robot", "x"}}, false), Error);
  }
}

}  // namespace
}  // namespace btx::testing
