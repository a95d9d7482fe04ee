// Expert-training modes ([experts] mode) end to end at tiny size: "ffn" experts train their FFNs
// only, so every other tensor stays the seed's bit for bit; merged under tag routing they give
// each expert's own logits back on its domain, exactly, since the merge averages only identical
// tensors. "flexolmo" experts are two-expert MoEs beside the seed's frozen FFN: everything but
// their own FFN and router row stays as branched, and the flexolmo merge of one expert is that
// expert. The mode is recorded in expert.json.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "btx/io/safetensors.h"
#include "btx/model/moe.h"
#include "btx/model/param_roles.h"
#include "btx/run/experts.h"
#include "btx/run/model_folder.h"
#include "btx/train/checkpoint.h"
#include "e2e_util.h"
#include "tiny_corpus.h"

namespace btx {
namespace {

using testing::run_btx;

TEST(ExpertModes, FfnExpertsKeepTheSeedsSharedLayersAndMergeExactly) {
  testing::TempDir dir("btx-expert-modes");
  auto corpus = testing::make_tiny_corpus(dir.path() / "corpus", 80'000);
  testing::write_text(dir.path() / "run.toml",
                      testing::tiny_run_config(corpus, 40, 30) + "[experts]\nmode = \"ffn\"\n");
  const RunDir run{dir.path() / "run"};
  const std::string r_ = " --run " + run.root.string();
  for (const std::string& cmd :
       {"seed --config " + (dir.path() / "run.toml").string() + r_, "branch" + r_,
        "launch" + r_ + " --jobs 2", "merge" + r_ + " --method tag"}) {
    auto r = run_btx(cmd);
    ASSERT_EQ(r.code, 0) << cmd << "\n" << r.output;
  }
  const auto seed = load_safetensors(run.seed() / "model.safetensors").tensors;
  const auto experts = list_experts(run);
  ASSERT_EQ(experts.size(), 3u);
  for (const auto& e : experts) {
    EXPECT_EQ(e.mode, ExpertMode::kFfn);
    EXPECT_EQ(read_json_file(expert_dir(run, e.name) / "expert.json")["mode"], "ffn");
    EXPECT_TRUE(load_train_state(expert_dir(run, e.name))->done) << e.name;
    const auto w = load_safetensors(expert_dir(run, e.name) / "model.safetensors").tensors;
    ASSERT_EQ(w.size(), seed.size());
    int ffn = 0, changed = 0;
    for (const auto& [name, t] : seed) {
      const bool is_ffn = param_role(name) == ParamRole::kFfn;
      ffn += is_ffn;
      if (!is_ffn) {
        EXPECT_TRUE(torch::equal(w.at(name), t)) << e.name << " " << name;
      } else {
        changed += !torch::equal(w.at(name), t);
      }
    }
    EXPECT_EQ(ffn, 2 * 3);  // gate, up and down of each of the 2 layers
    EXPECT_EQ(changed, ffn) << e.name;
  }

  torch::NoGradGuard no_grad;
  auto moe = load_model(run.root / "merged/tag");
  moe->eval();
  const RunConfig c = load_run(run);
  const auto routes = ModelFolder::open(run.root / "merged/tag").domain_experts();
  ASSERT_EQ(routes.size(), experts.size());
  for (const auto& [domain, j] : routes) {
    auto expert = load_model(expert_dir(run, domain));  // one expert per domain, named after it
    expert->eval();
    const auto x = domain_heldout_windows(btx::Run(run, c), domain, 2, 32).narrow(1, 0, 32);
    force_experts(moe, torch::full({x.size(0)}, j, torch::kInt64));
    EXPECT_TRUE(torch::equal(moe->forward(x), expert->forward(x))) << domain;
  }
}

TEST(ExpertModes, FlexolmoExpertsTrainOnlyTheirOwnSlotAndConcatenate) {
  testing::TempDir dir("btx-expert-modes-flexolmo");
  auto corpus = testing::make_tiny_corpus(dir.path() / "corpus", 80'000);
  testing::write_text(dir.path() / "run.toml", testing::tiny_run_config(corpus, 40, 30) +
                                                   "[experts]\nmode = \"flexolmo\"\n");
  const RunDir run{dir.path() / "run"};
  const std::string r_ = " --run " + run.root.string();
  for (const std::string& cmd :
       {"seed --config " + (dir.path() / "run.toml").string() + r_, "branch" + r_}) {
    auto r = run_btx(cmd);
    ASSERT_EQ(r.code, 0) << cmd << "\n" << r.output;
  }
  torch::NoGradGuard no_grad;
  const RunConfig c = load_run(run);
  // As branched, an expert computes the seed's function: both slots hold the seed's FFN.
  {
    auto seed = load_model(run.seed());
    auto branched = load_model(expert_dir(run, "code"));
    seed->eval();
    branched->eval();
    EXPECT_EQ(branched->config().num_local_experts, 2);
    const auto x = domain_heldout_windows(btx::Run(run, c), "code", 2, 32).narrow(1, 0, 32);
    EXPECT_TRUE(torch::allclose(branched->forward(x), seed->forward(x), 1e-4, 1e-5));
  }
  for (const std::string& cmd : {"launch" + r_ + " --jobs 2", "merge" + r_ + " --method flexolmo",
                                 "merge" + r_ + " --method average"}) {
    auto r = run_btx(cmd);
    ASSERT_EQ(r.code, 0) << cmd << "\n" << r.output;
  }
  const auto seed = load_safetensors(run.seed() / "model.safetensors").tensors;
  const auto experts = list_experts(run);
  ASSERT_EQ(experts.size(), 3u);
  std::vector<TensorMap> w;
  for (const auto& e : experts) {
    EXPECT_EQ(e.mode, ExpertMode::kFlexolmo);
    w.push_back(load_safetensors(expert_dir(run, e.name) / "model.safetensors").tensors);
  }
  const std::string gate = "model.layers.1.block_sparse_moe.gate.weight";
  for (size_t i = 0; i < w.size(); ++i) {
    for (const auto& [name, t] : w[i]) {
      const std::string layer_ffn = name.substr(0, name.find(".block_sparse_moe."));
      if (param_role(name) != ParamRole::kFfn && param_role(name) != ParamRole::kRouter) {
        EXPECT_TRUE(torch::equal(t, seed.at(name))) << experts[i].name << " " << name;
      } else if (name.find(".experts.0.") != std::string::npos) {  // the anchor: the seed's FFN
        const char* proj = name.find(".w1.") != std::string::npos   ? "gate"
                           : name.find(".w3.") != std::string::npos ? "up"
                                                                    : "down";
        EXPECT_TRUE(torch::equal(t, seed.at(layer_ffn + ".mlp." + proj + "_proj.weight"))) << name;
      } else if (name.find(".experts.1.") != std::string::npos) {
        EXPECT_FALSE(torch::equal(
            t, w[i].at(std::string(name).replace(name.find(".experts.1."), 11, ".experts.0."))))
            << experts[i].name << " " << name << " did not train";
      }
    }
    // The anchor's router row stayed as branched (the same in every expert); the own one moved.
    EXPECT_TRUE(torch::equal(w[i].at(gate)[0], w[0].at(gate)[0])) << experts[i].name;
    if (i > 0) EXPECT_FALSE(torch::equal(w[i].at(gate)[1], w[0].at(gate)[1]));
  }
  // The merge: the anchor, then each expert's own FFN and router row, the rest the seed's.
  const auto merged = load_safetensors(run.root / "merged/flexolmo/model.safetensors").tensors;
  EXPECT_EQ(load_model_config(run.root / "merged/flexolmo").num_local_experts, 4);
  EXPECT_TRUE(torch::equal(merged.at(gate)[0], w[0].at(gate)[0]));
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_TRUE(torch::equal(merged.at(gate)[static_cast<int64_t>(i) + 1], w[i].at(gate)[1]));
    const std::string own = "model.layers.0.block_sparse_moe.experts.1.w2.weight";
    EXPECT_TRUE(torch::equal(
        merged.at(fmt::format("model.layers.0.block_sparse_moe.experts.{}.w2.weight", i + 1)),
        w[i].at(own)));
  }
  EXPECT_TRUE(
      torch::equal(merged.at("model.embed_tokens.weight"), seed.at("model.embed_tokens.weight")));
  // Dense-expert merges refuse them, naming the mode.
  auto r = run_btx("merge" + r_ + " --method btx");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("btx merges experts trained in mode all or ffn, not 'flexolmo' "
                          "(expert 'code')"),
            std::string::npos)
      << r.output;

  // A flexolmo merge of one expert is that expert.
  const RunDir one{dir.path() / "one"};
  fs::copy(run.root, one.root, fs::copy_options::recursive);
  fs::remove_all(one.root / "merged");
  for (const char* gone : {"prose", "verse"}) fs::remove_all(expert_dir(one, gone));
  r = run_btx("merge --run " + one.root.string() + " --method flexolmo");
  ASSERT_EQ(r.code, 0) << r.output;
  auto single = load_model(one.root / "merged/flexolmo");
  auto code = load_model(expert_dir(one, "code"));
  single->eval();
  code->eval();
  for (const auto& domain : {"code", "prose"}) {
    const auto x = domain_heldout_windows(btx::Run(one, c), domain, 2, 32).narrow(1, 0, 32);
    EXPECT_TRUE(torch::equal(single->forward(x), code->forward(x))) << domain;
  }
}

TEST(ExpertModes, AnUnknownModeIsAnErrorNamingTheKey) {
  testing::TempDir dir("btx-expert-modes-bad");
  auto corpus = testing::make_tiny_corpus(dir.path() / "corpus", 20'000);
  testing::write_text(dir.path() / "run.toml",
                      testing::tiny_run_config(corpus, 4, 2) + "[experts]\nmode = \"attn\"\n");
  auto r = run_btx("seed --config " + (dir.path() / "run.toml").string() + " --run " +
                   (dir.path() / "run").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("experts.mode: 'attn' is not one of all, ffn, flexolmo"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(dir.path() / "run" / "seed"));
}

}  // namespace
}  // namespace btx
