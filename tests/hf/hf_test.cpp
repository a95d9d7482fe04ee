// The hf layer on its own: HF's config.json for each kind of btx model (Llama, Mixtral with the
// router HF computes for it) and the refusals with their reason (SMEAR, BAM, routers HF lacks);
// tokenizer.json's shape; and one GGUF export of a merged MoE folder read back: the architecture
// keys, the stacked experts, and the provenance taken from the folder's merge record.
#include "btx/hf/hf.h"

#include <gtest/gtest.h>

#include "btx/hf/gguf_export.h"
#include "btx/hf/tokenizer_json.h"
#include "btx/io/gguf.h"
#include "btx/train/checkpoint.h"
#include "btx/util/fs.h"
#include "model_util.h"
#include "moe_util.h"
#include "test_util.h"
#include "tokenizer_util.h"

namespace btx {
namespace {

using testing::error_of;

TEST(HfConfig, DenseIsLlamaWithEveryKeyHfReads) {
  const ModelConfig c = testing::small_model_config(300, 64, 96, 2, 4, 2, 128);
  const auto j = hf_config(c, "m", "bfloat16");
  EXPECT_EQ(j.at("architectures"), nlohmann::json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(j.at("model_type"), "llama");
  EXPECT_EQ(j.at("num_key_value_heads"), 2);
  EXPECT_EQ(j.at("head_dim"), 16);  // 64 / 4
  EXPECT_EQ(j.at("torch_dtype"), "bfloat16");
  EXPECT_EQ(j.at("hidden_act"), "silu");
  EXPECT_TRUE(j.at("rope_scaling").is_null());
  EXPECT_FALSE(j.contains("num_local_experts"));
}

TEST(HfConfig, MixtralsKIsWhatItsRouterComputesAtInference) {
  const auto k_of = [](const std::string& mode, int64_t k) {
    return hf_config(testing::routed_config("mixtral", 4, k, mode), "m")
        .at("num_experts_per_tok")
        .get<int64_t>();
  };
  EXPECT_EQ(k_of("top-k", 2), 2);
  EXPECT_EQ(k_of("soft", 2), 4);    // every expert: Mixtral's top-E
  EXPECT_EQ(k_of("gumbel", 1), 1);  // the argmax at inference
  EXPECT_EQ(k_of("reinforce", 1), 1);
  const auto j = hf_config(testing::routed_config("mixtral", 4, 2, "top-k"), "m");
  EXPECT_EQ(j.at("architectures"), nlohmann::json::array({"MixtralForCausalLM"}));
  EXPECT_EQ(j.at("num_local_experts"), 4);
}

TEST(HfConfig, ModelsNoHfArchitectureComputesAreRefusedWithTheReason) {
  EXPECT_NE(error_of([] {
              hf_config(testing::routed_config("smear", 2, 1, "prefix"), "m");
            }).find("m is a SMEAR model"),
            std::string::npos);
  ModelConfig bam = testing::routed_config("mixtral", 2, 1, "top-k");
  bam.num_attention_experts = 2;
  EXPECT_NE(error_of([&] { hf_config(bam, "m"); }).find("m is a BAM model"), std::string::npos);
  for (const char* mode : {"hash", "tag", "sample"}) {
    const std::string e =
        error_of([&] { hf_config(testing::routed_config("mixtral", 2, 1, mode), "m"); });
    EXPECT_NE(e.find(std::string("routes with router_mode \"") + mode + "\""), std::string::npos)
        << e;
    EXPECT_NE(e.find("top-k, soft, gumbel or reinforce"), std::string::npos) << e;
  }
}

class HfExportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("btx-hf");
    testing::write_text(*dir_ / "corpus/prose.txt",
                        testing::tagged_lines('P', testing::kProseWords, 60'000, 1));
    testing::train_test_tokenizer(*dir_ / "corpus", *dir_ / "run/tokenizer.model", 300, 30'000);
  }
  static void TearDownTestSuite() { delete dir_; }
  static testing::TempDir* dir_;
};
testing::TempDir* HfExportTest::dir_ = nullptr;

TEST_F(HfExportTest, TokenizerJsonIsAByteFallbackBpeOverThePieces) {
  const Tokenizer tok = Tokenizer::load(*dir_ / "run/tokenizer.model");
  const auto j = hf_tokenizer_json(tok);
  EXPECT_EQ(j.at("model").at("type"), "BPE");
  EXPECT_TRUE(j.at("model").at("byte_fallback").get<bool>());
  EXPECT_EQ(j.at("model").at("vocab").size(), static_cast<size_t>(tok.vocab_size()));
  EXPECT_TRUE(j.at("pre_tokenizer").is_null());
  const auto c = hf_tokenizer_config(tok, 128, "");
  EXPECT_FALSE(c.at("add_prefix_space").get<bool>());
  EXPECT_FALSE(c.contains("chat_template"));
}

TEST_F(HfExportTest, GgufOfAMergedMoeCarriesItsMergeRecord) {
  const fs::path model = *dir_ / "run/merged/btx";
  fs::create_directories(model.parent_path());
  ModelConfig c = testing::routed_config("mixtral", 2, 1, "top-k");
  c.vocab_size = 300;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  torch::manual_seed(0);
  CausalLM m(c);
  save_checkpoint(model, {&m, nullptr, nullptr, {}});
  testing::write_text(model / "merge.json", R"({
    "method": "btx", "kind": "checkpoint", "params": {},
    "experts": [{"name": "code", "path": "../../experts/code", "sha256": "aa"},
                {"name": "prose", "path": "../../experts/prose", "sha256": "bb"}],
    "result": {"moe_experts": [{"name": "code", "domains": ["code"]},
                               {"name": "prose", "domains": ["prose"]}]}})");
  GgufExportOptions o;
  o.model = model;
  o.out = *dir_ / "btx.gguf";
  const auto r = export_gguf(o);
  EXPECT_EQ(r.at("architecture"), "llama (MoE)");
  const GgufFile g = read_gguf(o.out);
  EXPECT_EQ(g.metadata.at("general.architecture"), "llama");
  EXPECT_EQ(g.metadata.at("btx.merge.method"), "btx");
  EXPECT_EQ(g.metadata.at("general.base_model.count"), 2);
  EXPECT_EQ(g.metadata.at("general.base_model.1.name"), "prose");
  EXPECT_EQ(g.metadata.at("llama.expert_count"), 2);
  EXPECT_EQ(g.metadata.at("llama.expert_used_count"), 1);
  EXPECT_EQ(g.metadata.at("general.name"), "btx");  // the folder's name
  // The stacked experts are the checkpoint's, expert by expert (w1 = gate).
  const auto gate = g.tensors.at("blk.1.ffn_gate_exps.weight");
  EXPECT_EQ(gate.sizes(), (std::vector<int64_t>{2, 64, 32}));
  const auto w1 = m->named_parameters()["model.layers.1.block_sparse_moe.experts.1.w1.weight"];
  EXPECT_TRUE(torch::equal(gate[1], w1.detach()));
  // An ensemble has no single model: refused with the reason, no file written.
  const fs::path ens = *dir_ / "run/merged/ensemble";
  fs::create_directories(ens);
  testing::write_text(ens / "merge.json", R"({"method": "ensemble", "kind": "ensemble",
    "params": {"prior": "cached", "top-k": "0", "alpha": "0.3", "prior-windows": "16"}})");
  o.model = ens;
  o.out = *dir_ / "ensemble.gguf";
  EXPECT_NE(error_of([&] { export_gguf(o); }).find("a BTM ensemble"), std::string::npos);
  EXPECT_FALSE(fs::exists(o.out));
}

}  // namespace
}  // namespace btx
