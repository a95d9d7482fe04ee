// btx sweep's plan, by hand: parsing KEY=V1,V2 entries, setting a config key with its type
// checked, seed_share's split of the token budget, the points of several axes, stage keys that
// leave the run folder out, and which stages a point shares with an earlier one.
#include "btx/study/sweep.h"

#include <gtest/gtest.h>

#include "btx/util/error.h"
#include "test_util.h"

namespace btx {
namespace {

using testing::error_of;
using testing::TempDir;

RunConfig tiny() {
  return parse_run_config(default_study_config(), "default");
}

TEST(Sweep, ParsesAxes) {
  const auto a = parse_sweep_axis("finetune.steps= 100, 400", "--set");
  EXPECT_EQ(a.key, "finetune.steps");
  EXPECT_EQ(a.values, (std::vector<std::string>{"100", "400"}));
  EXPECT_EQ(error_of([] { parse_sweep_axis("finetune.steps", "--set"); }),
            "--set 'finetune.steps': expected KEY=V1,V2,... (e.g. seed_share=0.2,0.5 or "
            "finetune.steps=100,400)");
  EXPECT_EQ(error_of([] { parse_sweep_axis("a=1,,2", "--set"); }),
            "--set 'a=1,,2': an empty value");
  EXPECT_EQ(error_of([] { parse_sweep_axis("a=1,1", "[study] sweep[0]"); }),
            "[study] sweep[0] 'a=1,1': the value '1' is given twice");
}

TEST(Sweep, SetsAConfigKeyOfItsOwnType) {
  const RunConfig c = tiny();
  EXPECT_EQ(sweep_config(c, "finetune.steps", "400").finetune.steps, 400);
  EXPECT_DOUBLE_EQ(sweep_config(c, "experts.train.lr", "2e-3").experts.train.lr, 2e-3);
  EXPECT_DOUBLE_EQ(sweep_config(c, "experts.train.lr", "1").experts.train.lr, 1.0);  // int -> real
  EXPECT_EQ(sweep_config(c, "experts.mode", "ffn").experts.mode, ExpertMode::kFfn);  // bare string
  EXPECT_EQ(sweep_config(c, "experts.mode", "\"ffn\"").experts.mode,
            ExpertMode::kFfn);  // TOML string
  EXPECT_FALSE(sweep_config(c, "study.report", "false").study.report);
  EXPECT_EQ(sweep_config(c, "corpus.novel", "[\"legal\"]").corpus.novel,
            (std::vector<std::string>{"legal"}));
  EXPECT_EQ(error_of([&] { sweep_config(c, "model.hidden_size", "128.7"); }),
            "--set model.hidden_size=128.7: expected an integer for model.hidden_size (as its "
            "current value, 128)");
  EXPECT_EQ(error_of([&] { sweep_config(c, "model.nosuch", "1"); }),
            "--set model.nosuch=1: unknown config key 'model.nosuch' (`btx run --print-config` "
            "lists every key)");
  EXPECT_EQ(error_of([&] { sweep_config(c, "model", "1"); }),
            "--set model=1: unknown config key 'model' (`btx run --print-config` lists every key)");
  EXPECT_EQ(error_of([&] { sweep_config(c, "study.report", "maybe"); }),
            "--set study.report=maybe: expected true or false for study.report (as its current "
            "value, true)");
  // The whole config is checked again: a value it refuses is refused.
  EXPECT_NE(error_of([&] { sweep_config(c, "finetune.steps", "0"); }).find("steps"),
            std::string::npos);
}

TEST(Sweep, SeedShareSplitsTheTokenBudget) {
  // Tiny: seed 300 x 2048 tokens + 4 experts x 150 x 2048 = 1,843,200 tokens = 900 seed steps.
  const RunConfig c = tiny();
  const RunConfig half = sweep_config(c, "seed_share", "0.5");
  EXPECT_EQ(half.seed_train.steps, 450);
  EXPECT_EQ(half.experts.train.steps, 113);  // 112.5, rounded half away from zero
  const RunConfig third = sweep_config(c, "seed_share", "0.3");
  EXPECT_EQ(third.seed_train.steps, 270);
  EXPECT_EQ(third.experts.train.steps, 158);  // 630 / 4 = 157.5
  for (const char* bad : {"0", "1", "-0.5", "x"}) {
    EXPECT_NE(error_of([&] {
                sweep_config(c, "seed_share", bad);
              }).find("expected a number strictly between 0 and 1"),
              std::string::npos)
        << bad;
  }
  EXPECT_NE(error_of([&] { sweep_config(c, "seed_share", "0.0001"); }).find("leaves the seed 0"),
            std::string::npos);
}

TEST(Sweep, PointsAreEveryCombinationInTheirOwnFolders) {
  TempDir tmp;
  const auto points = sweep_points(
      tiny(), {{"finetune.steps", {"100", "200"}}, {"experts.train.lr", {"1e-3", "2e-3", "3e-3"}}},
      tmp.path());
  ASSERT_EQ(points.size(), 6u);
  EXPECT_EQ(points[0].label, "finetune.steps=100,experts.train.lr=1e-3");
  EXPECT_EQ(points[1].label, "finetune.steps=100,experts.train.lr=2e-3");
  EXPECT_EQ(points[5].label, "finetune.steps=200,experts.train.lr=3e-3");
  EXPECT_EQ(points[5].run.config().finetune.steps, 200);
  EXPECT_DOUBLE_EQ(points[5].run.config().experts.train.lr, 3e-3);
  EXPECT_EQ(points[5].run.root, tmp.path() / "finetune.steps=200,experts.train.lr=3e-3");
  EXPECT_EQ(
      error_of([&] {
        sweep_points(tiny(), {{"finetune.steps", {"1"}}, {"finetune.steps", {"2"}}}, tmp.path());
      }),
      "--set finetune.steps: the key is swept twice");
  EXPECT_EQ(error_of([&] { sweep_points(tiny(), {}, tmp.path()); }),
            "nothing to sweep: give --set KEY=V1,V2,... (or [study] sweep)");
}

TEST(Sweep, StageKeysLeaveTheRunFolderOut) {
  TempDir tmp;
  const RunConfig c = tiny();
  const btx::Run a(RunDir{tmp.path() / "a"}, c), b(RunDir{tmp.path() / "b"}, c);
  const auto ka = stage_keys(a, plan_study(a));
  const auto kb = stage_keys(b, plan_study(b));
  EXPECT_EQ(ka, kb);
  EXPECT_EQ(ka.size(), plan_study(a).size());
}

TEST(Sweep, PlanSharesWhatTheValuesDoNotChange) {
  TempDir tmp;
  // The finetuning budget: the corpus, data, seed and experts, the analyses of the experts, and
  // every merge that does not finetune (and its evaluation) are shared; the finetuned merges and
  // what reads them run again.
  const auto points = sweep_points(tiny(), {{"finetune.steps", {"100", "200"}}}, tmp.path());
  const SweepPlan plan = plan_sweep(points);
  ASSERT_EQ(plan.shared_from.size(), 2u);
  EXPECT_TRUE(plan.shared_from[0].empty());
  const auto& shared = plan.shared_from[1];
  for (const char* s : {"corpus", "data", "seed", "experts", "analysis/divergence",
                        "analysis/barriers", "merge/average", "eval/average", "merge/fisher",
                        "merge/ensemble-all", "eval/ensemble-all", "analysis/ensemble-all"}) {
    ASSERT_TRUE(shared.count(s)) << s;
    EXPECT_EQ(shared.at(s), "finetune.steps=100") << s;
  }
  for (const char* s :
       {"merge/btx", "eval/btx", "merge/tag", "merge/dense-400", "results", "report"}) {
    EXPECT_FALSE(shared.count(s)) << s;
  }
  // The seed's share: only the corpus and the data are the same.
  const auto shares =
      plan_sweep(sweep_points(tiny(), {{"seed_share", {"0.2", "0.6"}}}, tmp.path()));
  EXPECT_EQ(shares.shared_from[1].size(), 2u);
  EXPECT_TRUE(shares.shared_from[1].count("data"));
  // Values that change no stage (the run's name is not an input of any).
  EXPECT_EQ(error_of([&] {
              plan_sweep(sweep_points(tiny(), {{"name", {"a", "b"}}}, tmp.path()));
            }),
            "the sweep's points name=a and name=b run exactly the same stages: the values change "
            "nothing the study does (sweep a key its stages read)");
  // A value of the wrong type is refused before any plan.
  EXPECT_EQ(error_of([&] {
              sweep_points(tiny(), {{"tokenizer.sample_bytes_per_domain", {"1000000", "1e6"}}},
                           tmp.path());
            }),
            "--set tokenizer.sample_bytes_per_domain=1e6: expected an integer for "
            "tokenizer.sample_bytes_per_domain (as its current value, 1000000)");
}

}  // namespace
}  // namespace btx
