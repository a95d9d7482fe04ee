// SMEAR end to end at tiny size: `merge --method smear` builds the merged-expert model from the
// trained experts (identical experts give the dense model back, causal or not); `finetune`
// trains it and resumes exactly; eval and routing analysis take it like any routed model. The
// gradient-estimator routers (gumbel, reinforce) of the MoE merge, finetune and evaluate too.
#include <gtest/gtest.h>

#include "btx/io/safetensors.h"
#include "btx/model/smear.h"
#include "btx/run/experts.h"
#include "btx/run/run_dir.h"
#include "btx/train/checkpoint.h"
#include "e2e_util.h"
#include "forest_fixture.h"

namespace btx {
namespace {

using testing::run_btx;

class SmearMergeTest : public testing::ForestTest<SmearMergeTest> {};

TEST_F(SmearMergeTest, IdenticalExpertsGiveTheDenseModelBack) {
  RunDir run = fresh_run("identical");
  testing::make_experts_identical(run.root, "code", {"prose", "verse"});
  const std::string r_ = " --run " + run.root.string();
  for (const std::string& args :
       {std::string("--method smear"), std::string("--method smear --router sequence --name s"),
        std::string("--method smear --router-init centroid --name c")}) {
    auto r = run_btx("merge" + r_ + " " + args);
    ASSERT_EQ(r.code, 0) << args << "\n" << r.output;
  }
  torch::manual_seed(0);
  auto x = torch::randint(0, 320, {2, 20});
  torch::NoGradGuard ng;
  auto dense = load_model(expert_dir(run, "code"));
  dense->eval();
  for (const char* m : {"smear", "s", "c"}) {
    auto model = load_model(run.root / "merged" / m);
    model->eval();
    EXPECT_TRUE(model->config().is_smear());
    EXPECT_EQ(model->config().num_local_experts, 3);
    EXPECT_DOUBLE_EQ(model->config().smear_expert_dropout, 0.1);
    EXPECT_TRUE(torch::allclose(model->forward(x), dense->forward(x), 1e-4, 1e-5)) << m;
  }
  EXPECT_EQ(load_model_config(run.root / "merged/s").router_mode, "sequence");
  // The sequence router is not causal: said in the eval JSON and marked in the table.
  auto r = run_btx("eval" + r_ + " --model merged/smear,merged/s");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(read_json_file(run.eval("smear"))["causal"].get<bool>());
  EXPECT_FALSE(read_json_file(run.eval("s"))["causal"].get<bool>());
  EXPECT_NE(r.output.find("s [nc]"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("smear [nc]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[nc] not causal"), std::string::npos) << r.output;
}

TEST_F(SmearMergeTest, FinetuneResumesExactlyThenEvalAndRouting) {
  RunDir run = fresh_run("finetune"), ref = fresh_run("finetune-ref");
  const std::string r_ = " --run " + run.root.string();
  ASSERT_EQ(run_btx("merge" + r_ + " --method smear").code, 0);
  ASSERT_EQ(run_btx("merge --run " + ref.root.string() + " --method smear").code, 0);
  auto r = run_btx("finetune" + r_ + " --model merged/smear --stop-after 3");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_btx("finetune" + r_ + " --model merged/smear --resume");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_btx("finetune --run " + ref.root.string() + " --model merged/smear");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(sha256_file(run.root / "merged/smear/model.safetensors") ==
              sha256_file(ref.root / "merged/smear/model.safetensors"));
  EXPECT_EQ(load_train_state(run.root / "merged/smear")->step, 8);
  for (const auto& m : testing::read_metrics(ref.root / "merged/smear/metrics.jsonl")) {
    EXPECT_FALSE(m.contains("aux_loss"));  // SMEAR has no load balancing
  }

  r = run_btx("eval" + r_ + " --model merged/smear");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto e = read_json_file(run.eval("smear"));
  EXPECT_LT(e["params_active"].get<int64_t>(), e["params_total"].get<int64_t>());
  EXPECT_LT(e["summary"]["train_mean_loss"].get<double>(), std::log(320.0));

  r = run_btx("routing" + r_ + " --model merged/smear --json --out " +
              (run.root / "routing.json").string());
  ASSERT_EQ(r.code, 0) << r.output;
  const auto a = read_json_file(run.root / "routing.json");
  EXPECT_EQ(a["model_type"], "smear");
  for (const auto& layer : a["layers"]) {
    for (const auto& d : {"code", "prose", "verse"}) {
      double sum = 0;
      for (double w : layer["mean_weight"][d].get<std::vector<double>>()) sum += w;
      EXPECT_NEAR(sum, 1.0, 1e-6) << d;
      EXPECT_LE(layer["entropy"][d].get<double>(), std::log(3.0) + 1e-6);
    }
  }
  r = run_btx("routing" + r_ + " --model merged/smear");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("mean merge weight"), std::string::npos) << r.output;

  r = run_btx("merge" + r_ + " --method smear --expert-dropout 1.5 --name bad");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--expert-dropout '1.5': expected a number in [0, 1)"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(run.root / "merged/bad"));
}

TEST_F(SmearMergeTest, GradientEstimatorRoutersTrainAndEvaluate) {
  RunDir run = fresh_run("estimators");
  const std::string r_ = " --run " + run.root.string();
  for (const char* router : {"gumbel", "reinforce"}) {
    auto r = run_btx("merge" + r_ + " --method btx --router " + std::string(router) + " --name " +
                     router);
    ASSERT_EQ(r.code, 0) << router << "\n" << r.output;
    const auto c = load_model_config(run.root / "merged" / router);
    EXPECT_EQ(c.num_experts_per_tok, 1) << router;
    r = run_btx("finetune" + r_ + " --model merged/" + std::string(router));
    ASSERT_EQ(r.code, 0) << router << "\n" << r.output;
  }
  // The REINFORCE baseline trained (it starts at zero); its router moved.
  const auto t = load_safetensors(run.root / "merged/reinforce/model.safetensors").tensors;
  EXPECT_GT(t.at("model.layers.0.block_sparse_moe.baseline.weight").abs().sum().item<double>(), 0);
  auto r = run_btx("eval" + r_ + " --model merged/gumbel,merged/reinforce");
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* m : {"gumbel", "reinforce"}) {
    const auto e = read_json_file(run.eval(m));
    EXPECT_LT(e["summary"]["train_mean_loss"].get<double>(), std::log(320.0)) << m;
  }
}

}  // namespace
}  // namespace btx
