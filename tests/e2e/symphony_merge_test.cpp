// `btx merge --method symphony` end to end at tiny size (Symphony-MoE): an expert "of another
// seed" -- the anchor expert with its residual stream and FFN neurons shuffled, the same
// function in another basis, saved outside the run -- is aligned back exactly, so its slot holds
// the anchor's FFN; the shared layers are the experts' attention fused on the sphere and
// their norms and embeddings averaged; --align no mixes the shuffled weights as plain BTX would;
// experts are taken from another run with --from; bad requests are errors that leave nothing.
#include <gtest/gtest.h>

#include "btx/analysis/results.h"
#include "btx/io/safetensors.h"
#include "btx/merge/neuron_align.h"
#include "btx/merge/slerp.h"
#include "btx/model/attention_experts.h"
#include "btx/model/moe.h"
#include "btx/run/experts.h"
#include "btx/train/checkpoint.h"
#include "btx/util/fs.h"
#include "e2e_util.h"
#include "forest_fixture.h"

namespace btx {
namespace {

using testing::run_btx;

class SymphonyMergeTest : public testing::ForestTest<SymphonyMergeTest> {};

std::vector<int64_t> shuffled(int64_t n) {
  const auto p = torch::randperm(n, torch::kInt64);
  return {p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + n};
}

TEST_F(SymphonyMergeTest, AnExpertOfAnotherSeedIsAlignedBackExactly) {
  RunDir run = fresh_run("aligned");
  const std::string r_ = " --run " + run.root.string();
  // An expert as another seed could have learned it: the anchor's (code's) function with its
  // residual stream and every layer's FFN neurons in another order, saved outside the run and
  // taken for prose. (Tiny experts trained from the same seed are too far apart for the
  // alignment to find one of them in another: their weights moved far from the seed's tiny
  // init in 30 steps.)
  CausalLM other = load_model(expert_dir(run, "code"));
  const ModelConfig c = other->config();
  torch::manual_seed(3);
  permute_residual_stream(other, shuffled(c.hidden_size));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    permute_ffn_neurons(other, l, shuffled(c.intermediate_size));
  const fs::path foreign = run.root.parent_path() / "aligned-foreign";
  save_checkpoint(foreign, {&other});

  const std::string take = " --take prose=" + foreign.string();
  auto r = run_btx("merge" + r_ + " --method symphony --anchor code" + take);
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_btx("merge" + r_ + " --method symphony --align no --name plain" + take);
  ASSERT_EQ(r.code, 0) << r.output;
  ASSERT_EQ(run_btx("merge" + r_ + " --method btx").code, 0);
  const auto sym = load_safetensors(run.root / "merged/symphony/model.safetensors").tensors;
  const auto plain = load_safetensors(run.root / "merged/plain/model.safetensors").tensors;
  const auto btx = load_safetensors(run.root / "merged/btx/model.safetensors").tensors;
  // The experts merged: code, the shuffled code (as prose), verse; aligned, the second is code.
  std::vector<TensorMap> experts;
  for (const char* e : {"code", "code", "verse"})
    experts.push_back(load_safetensors(expert_dir(run, e) / "model.safetensors").tensors);
  const auto shuffled_prose = load_safetensors(foreign / "model.safetensors").tensors;

  // Every slot holds its expert's FFN, the foreign one's neurons back where code has them.
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (int64_t j = 0; j < 3; ++j) {
      for (const char* w : {"w1", "w2", "w3"}) {
        EXPECT_TRUE(
            torch::equal(sym.at(moe_ffn_name(l, j, w)), btx.at(moe_ffn_name(l, j == 1 ? 0 : j, w))))
            << l << " " << j << " " << w;
      }
    }
  }
  // Without alignment prose's slot is the shuffled FFN, read from a stream in another order.
  EXPECT_TRUE(
      torch::equal(plain.at(moe_ffn_name(0, 1, "w1")), shuffled_prose.at(dense_ffn_name(0, "w1"))));
  EXPECT_FALSE(torch::equal(plain.at(moe_ffn_name(0, 1, "w1")), btx.at(moe_ffn_name(0, 0, "w1"))));

  // The shared layers: attention fused on the sphere, norms and embeddings averaged, of the
  // aligned experts (the originals).
  auto all = [&](const std::string& name) {
    std::vector<torch::Tensor> out;
    for (const auto& e : experts) out.push_back(e.at(name));
    return out;
  };
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (const char* p : {"q", "k", "v", "o"}) {
      const std::string name = attention_name(l, p);
      EXPECT_TRUE(torch::allclose(sym.at(name), slerp_all(all(name)), 1e-5, 1e-6)) << name;
    }
  }
  for (const std::string name : {"model.embed_tokens.weight", "model.norm.weight",
                                 "model.layers.1.input_layernorm.weight"}) {
    EXPECT_TRUE(torch::allclose(sym.at(name), torch::stack(all(name)).mean(0), 1e-5, 1e-6)) << name;
  }
  // Plain mixing averages the shuffled expert's embedding with the others'.
  const auto mixed =
      (experts[0].at("model.embed_tokens.weight") + shuffled_prose.at("model.embed_tokens.weight") +
       experts[2].at("model.embed_tokens.weight")) /
      3;
  EXPECT_TRUE(torch::allclose(plain.at("model.embed_tokens.weight"), mixed, 1e-5, 1e-6));

  // merge.json: the checkpoint taken for prose, and what the alignment did.
  const auto j = read_json_file(run.root / "merged/symphony/merge.json");
  ASSERT_EQ(j["experts"].size(), 3u);
  EXPECT_EQ(j["experts"][1]["name"], "prose");
  EXPECT_EQ(fs::weakly_canonical(run.root / "merged/symphony" /
                                 j["experts"][1]["path"].get<std::string>()),
            fs::weakly_canonical(foreign));
  const auto& aligned = j["result"]["symphony"]["aligned"];
  ASSERT_EQ(aligned.size(), 1u);  // verse shares code's seed
  EXPECT_EQ(aligned[0]["expert"], "prose");
  EXPECT_GT(aligned[0]["residual_dims_moved"].get<int64_t>(), 0);
  EXPECT_NEAR(aligned[0]["residual_correlation"]["after"].get<double>(), 1.0, 1e-9);
  EXPECT_LT(aligned[0]["residual_correlation"]["before"].get<double>(), 0.5);
  EXPECT_EQ(j["result"]["symphony"]["anchor"], "code");
  // Nothing left over from the build.
  EXPECT_FALSE(fs::exists(run.root / "merged/symphony/aligned"));
  EXPECT_FALSE(fs::exists(run.root / "merged/symphony/fused-shared"));
  // The result is a routed model that finetunes like btx's.
  r = run_btx("finetune" + r_ + " --model merged/symphony --steps 2");
  EXPECT_EQ(r.code, 0) << r.output;
}

TEST_F(SymphonyMergeTest, ExpertsFromAnotherRunAndBadRequests) {
  RunDir run = fresh_run("from");
  RunDir other = fresh_run("from-other");
  const std::string r_ = " --run " + run.root.string();
  // --from relative to the run folder; the default --take is every second expert (prose).
  auto r = run_btx("merge" + r_ + " --method symphony --from ../from-other");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto j = read_json_file(run.root / "merged/symphony/merge.json");
  EXPECT_EQ(fs::weakly_canonical(run.root / "merged/symphony" /
                                 j["experts"][1]["path"].get<std::string>()),
            fs::weakly_canonical(expert_dir(other, "prose")));
  EXPECT_EQ(fs::weakly_canonical(run.root / "merged/symphony" /
                                 j["experts"][0]["path"].get<std::string>()),
            fs::weakly_canonical(expert_dir(run, "code")));
  // Both runs share one seed: nothing to align.
  EXPECT_TRUE(j["result"]["symphony"]["aligned"].empty());
  // The tokens behind it: the seed both runs share counts once (40 steps), the three experts
  // theirs (30 each); an expert branched from another seed brings that seed's 40 steps too.
  EXPECT_EQ(training_tokens(run, "merged/symphony"), (40 + 3 * 30) * 8 * 32);
  const fs::path record = expert_dir(other, "prose") / "expert.json";
  const std::string kept = read_file(record);
  auto other_seed = nlohmann::json::parse(kept);
  other_seed["init"]["seed_sha256"] = "0123456789abcdef";  // as if branched from another seed
  testing::write_text(record, other_seed.dump());
  EXPECT_EQ(training_tokens(run, "merged/symphony"), (40 + 3 * 30 + 40) * 8 * 32);
  testing::write_text(record, kept);
  // A second call is up to date; once the other run's expert has changed, it is not.
  r = run_btx("merge" + r_ + " --method symphony --from ../from-other");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("up to date"), std::string::npos) << r.output;
  const fs::path weights = expert_dir(other, "prose") / "model.safetensors";
  auto tensors = load_safetensors(weights).tensors;
  tensors.at("model.norm.weight").add_(0.01);
  save_safetensors(weights, tensors, {{"format", "pt"}});
  r = run_btx("merge" + r_ + " --method symphony --from ../from-other");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("different method, parameters or experts"), std::string::npos)
      << r.output;

  // A checkpoint of another shape.
  ModelConfig wide = load_model_config(run.seed());
  wide.intermediate_size += 8;
  CausalLM m(wide);
  const fs::path odd = run.root.parent_path() / "from-wide";
  save_checkpoint(odd, {&m});
  struct Bad {
    std::string args, message;
  };
  for (const Bad& bad : {
           Bad{"", "symphony needs experts of another seed"},
           Bad{" --take nosuch=" + odd.string(), "the run has no expert 'nosuch'"},
           Bad{" --take prose", "name the run it comes from with --from"},
           Bad{" --take prose=" + odd.string(), "intermediate_size"},
           Bad{" --take prose=/no/such/dir", "--take '/no/such/dir': no such folder"},
           Bad{" --from ../from-other --take prose --anchor nosuch", "--anchor 'nosuch'"},
       }) {
    r = run_btx("merge" + r_ + " --method symphony --name bad" + bad.args);
    EXPECT_NE(r.code, 0) << bad.args;
    EXPECT_NE(r.output.find(bad.message), std::string::npos) << bad.args << "\n" << r.output;
    EXPECT_FALSE(fs::exists(run.root / "merged/bad")) << bad.args;
  }
}

}  // namespace
}  // namespace btx
