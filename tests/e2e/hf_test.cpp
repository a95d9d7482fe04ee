// Hugging Face export and import on a tiny trained forest: the exported dense and MoE checkpoints
// give btx's logits under an independent Python reference forward pass that reads only the
// exported files (tests/python/hf_reference.py, HF's Llama / Mixtral definitions);
// import(export(seed)) gives identical logits; sharding writes an index; models HF cannot express
// and bad checkpoints are refused with the reason.
#include <gtest/gtest.h>

#include <limits>

#include "btx/io/safetensors.h"
#include "btx/train/checkpoint.h"
#include "btx/util/fs.h"
#include "forest_fixture.h"
#include "hf_reference.h"

namespace btx::testing {
namespace {

struct HfSuite {};
using HfTest = ForestTest<HfSuite>;

torch::Tensor sample_ids(int64_t vocab, int64_t B, int64_t T) {
  torch::manual_seed(11);
  return torch::randint(3, vocab, {B, T}, torch::kInt64);
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

TEST_F(HfTest, ExportsMatchAnIndependentReferenceAndImportRoundTrips) {
  const RunDir run = fresh_run("export");
  const fs::path out = run.root / "hf";
  // A dense model and a BTX MoE (top-2, finetuned a few steps so its routers are not random).
  auto r = run_btx("merge --run " + run.root.string() + " --method btx");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_btx("finetune --run " + run.root.string() + " --model merged/btx");
  ASSERT_EQ(r.code, 0) << r.output;
  for (const std::string model : {"seed", "merged/btx"}) {
    const fs::path dir = out / eval_name(model);
    r = run_btx("export --run " + run.root.string() + " --model " + model + " --out " +
                dir.string());
    ASSERT_EQ(r.code, 0) << r.output;
    const auto cfg = read_json_file(dir / "config.json");
    EXPECT_EQ(cfg["architectures"][0], model == "seed" ? "LlamaForCausalLM" : "MixtralForCausalLM");
    for (const char* f : {"model.safetensors", "tokenizer.model", "tokenizer_config.json",
                          "special_tokens_map.json", "generation_config.json"})
      EXPECT_TRUE(fs::exists(dir / f)) << f;
    EXPECT_EQ(read_json_file(dir / "special_tokens_map.json")["eos_token"], "</s>");
    const auto ids = sample_ids(cfg["vocab_size"], 3, 24);
    const auto ours = btx_logits(run.root / model, ids);
    const auto ref = reference_logits(dir, ids, run.root);
    const double scale = ours.abs().max().item<double>();
    EXPECT_LT(max_abs_diff(ours, ref), 1e-5 * std::max(1.0, scale)) << model;
  }
  // Import of the dense export: the seed of a new run, with identical logits.
  const fs::path imported = run.root.parent_path() / "imported";
  r = run_btx("import --hf " + (out / "seed").string() + " --run " + imported.string() +
              " --config " + (run.root.parent_path() / "run.toml").string());
  ASSERT_EQ(r.code, 0) << r.output;
  const auto ids = sample_ids(load_model_config(run.seed()).vocab_size, 2, 16);
  EXPECT_TRUE(torch::equal(btx_logits(run.seed(), ids), btx_logits(imported / "seed", ids)));
  EXPECT_EQ(sha256_file(imported / "tokenizer.model"), sha256_file(run.tokenizer_file()));
  EXPECT_TRUE(load_train_state(imported / "seed")->done);
  // A second import into the same run is refused.
  r = run_btx("import --hf " + (out / "seed").string() + " --run " + imported.string() +
              " --config " + (run.root.parent_path() / "run.toml").string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("already has a seed"), std::string::npos) << r.output;
}

TEST_F(HfTest, ShardedBfloat16ExportImportsWithinBfloat16Rounding) {
  const RunDir run = fresh_run("sharded");
  const fs::path dir = run.root / "hf-bf16";
  // 0.0001 GB = 100 kB per shard: several shards and an index.
  auto r = run_btx("export --run " + run.root.string() + " --model seed --dtype bfloat16 " +
                   "--max-shard-size 0.0001 --out " + dir.string());
  ASSERT_EQ(r.code, 0) << r.output;
  const auto index = read_json_file(dir / "model.safetensors.index.json");
  std::set<std::string> shards;
  for (const auto& [name, file] : index["weight_map"].items()) shards.insert(file);
  EXPECT_GT(shards.size(), 1u);
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  EXPECT_EQ(read_json_file(dir / "config.json")["torch_dtype"], "bfloat16");
  for (const auto& s : shards) {
    for (const auto& [name, info] : read_safetensors_header(dir / s)) EXPECT_EQ(info.dtype, "BF16");
  }
  // The reference reads the shards too.
  const auto ids = sample_ids(read_json_file(dir / "config.json")["vocab_size"], 2, 16);
  const fs::path imported = run.root.parent_path() / "imported-bf16";
  r = run_btx("import --hf " + dir.string() + " --run " + imported.string() + " --config " +
              (run.root.parent_path() / "run.toml").string());
  ASSERT_EQ(r.code, 0) << r.output;
  const auto ours = btx_logits(imported / "seed", ids);
  EXPECT_LT(max_abs_diff(ours, reference_logits(dir, ids, run.root)), 1e-4);
  EXPECT_LT(max_abs_diff(ours, btx_logits(run.seed(), ids)), 0.5);  // bf16 weights: close

  // A missing shard is named.
  fs::remove(dir / *shards.begin());
  r = run_btx("import --hf " + dir.string() + " --run " + (run.root / "x").string() + " --config " +
              (run.root.parent_path() / "run.toml").string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(
      r.output.find("shard " + (dir / *shards.begin()).string() + " named by the index is missing"),
      std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(run.root / "x" / "seed"));
}

TEST_F(HfTest, ModelsThatAreNotOneHfModelAndBadCheckpointsAreRefused) {
  const RunDir run = fresh_run("refused");
  const std::string R = run.root.string();
  for (const std::string m : {"ensemble", "smear", "hash"}) {
    auto r = run_btx("merge --run " + R + " --method " + m);
    ASSERT_EQ(r.code, 0) << r.output;
  }
  auto r = run_btx("export --run " + R + " --model merged/ensemble --out " + R + "/e");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("is a BTM ensemble"), std::string::npos) << r.output;
  r = run_btx("export --run " + R + " --model merged/smear --out " + R + "/s");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("is a SMEAR model"), std::string::npos) << r.output;
  r = run_btx("export --run " + R + " --model merged/hash --out " + R + "/h");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("router_mode \"hash\""), std::string::npos) << r.output;
  for (const char* d : {"e", "s", "h"}) EXPECT_FALSE(fs::exists(run.root / d)) << d;

  // An existing --out is not overwritten.
  fs::create_directories(run.root / "taken");
  r = run_btx("export --run " + R + " --model seed --out " + R + "/taken");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("exists"), std::string::npos) << r.output;

  // Import: a Mixtral, a checkpoint without a tokenizer, an unsupported rope scaling.
  const std::string cfg = " --config " + (run.root.parent_path() / "run.toml").string();
  ASSERT_EQ(run_btx("export --run " + R + " --model seed --out " + R + "/llama").code, 0);
  r = run_btx("merge --run " + R + " --method btx --name moe");
  ASSERT_EQ(r.code, 0) << r.output;
  ASSERT_EQ(run_btx("export --run " + R + " --model merged/moe --out " + R + "/mixtral").code, 0);
  r = run_btx("import --hf " + R + "/mixtral --run " + R + "/i1" + cfg);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("architecture 'MixtralForCausalLM' cannot be imported as a seed "
                          "(supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
                          "Qwen3ForCausalLM)"),
            std::string::npos)
      << r.output;
  fs::rename(run.root / "llama" / "tokenizer.model", run.root / "tokenizer.model.away");
  fs::rename(run.root / "llama" / "tokenizer.json", run.root / "tokenizer.json.away");
  r = run_btx("import --hf " + R + "/llama --run " + R + "/i2" + cfg);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("no tokenizer.json and no tokenizer.model"), std::string::npos)
      << r.output;
  fs::rename(run.root / "tokenizer.model.away", run.root / "llama" / "tokenizer.model");
  fs::rename(run.root / "tokenizer.json.away", run.root / "llama" / "tokenizer.json");
  auto j = read_json_file(run.root / "llama" / "config.json");
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  write_text(run.root / "llama" / "config.json", j.dump());
  r = run_btx("import --hf " + R + "/llama --run " + R + "/i3" + cfg);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("rope_scaling type 'dynamic' is not supported"), std::string::npos)
      << r.output;
  j.erase("rope_scaling");
  write_text(run.root / "llama" / "config.json", j.dump());

  // Hostile checkpoints: each refused in one line naming the file and what is wrong, before
  // anything is written. A config.json that is not an object, a key of the wrong type, a string
  // for the architectures, a weight that is NaN, a tensor too many (checked from the header:
  // nothing is read).
  const fs::path config = run.root / "llama" / "config.json";
  const std::string good = read_file(config);
  auto refused = [&](const std::string& dir, const std::string& message) {
    const auto res = run_btx("import --hf " + R + "/llama --run " + R + "/" + dir + cfg);
    EXPECT_EQ(res.code, 1) << dir;
    EXPECT_NE(res.output.find(message), std::string::npos) << dir << ": " << res.output;
    EXPECT_FALSE(fs::exists(run.root / dir)) << dir;
  };
  write_text(config, "[]");
  refused("i4", "config.json: is []; expected a model's config (a JSON object)");
  auto bad = nlohmann::json::parse(good);
  bad["hidden_size"] = "128";
  write_text(config, bad.dump());
  refused("i5", "config.json: key 'hidden_size' must be an integer, got \"128\"");
  bad = nlohmann::json::parse(good);
  bad["architectures"] = "LlamaForCausalLM";
  write_text(config, bad.dump());
  refused("i6", "architectures is \"LlamaForCausalLM\"; expected a list of one name");
  write_text(config, good);
  const fs::path weights = run.root / "llama" / "model.safetensors";
  const std::string clean = read_file(weights);
  auto file = load_safetensors(weights);
  file.tensors["model.norm.weight"][3] = std::numeric_limits<float>::quiet_NaN();
  save_safetensors(weights, file.tensors);
  refused("i7", "tensor model.norm.weight has 1 values that are not finite (NaN or infinity)");
  file = load_safetensors(weights);
  file.tensors["model.norm.weight"][3] = 1.0f;
  file.tensors["model.extra.weight"] = torch::zeros({256, 256});
  save_safetensors(weights, file.tensors);
  refused("i8", "tensors a LlamaForCausalLM of this config does not have: model.extra.weight");
  write_text(weights, clean);
  // A config far larger than its weights is refused before a model of its size is built.
  bad = nlohmann::json::parse(good);
  bad["num_hidden_layers"] = 1000;
  bad["intermediate_size"] = 200000;
  write_text(config, bad.dump());
  refused("i10", "more than the");
  write_text(config, good);
  r = run_btx("import --hf " + R + "/llama --run " + R + "/i9" + cfg);
  EXPECT_EQ(r.code, 0) << r.output;  // the files put back import
}

}  // namespace
}  // namespace btx::testing
