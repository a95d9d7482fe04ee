// The results table of a tiny study: one row per evaluated model with its perplexities, costs and
// training tokens, the best per column marked, findings in numbers, results.md / results.json.
#include "btx/analysis/results.h"

#include <gtest/gtest.h>

#include "btx/analysis/intervals.h"
#include "btx/util/fs.h"
#include "e2e_util.h"
#include "forest_fixture.h"

namespace btx {
namespace {

using testing::run_btx;

class ResultsTest : public testing::ForestTest<ResultsTest> {};

TEST_F(ResultsTest, TableBestColumnsTokensAndFindings) {
  RunDir run = fresh_run("results");
  const std::string r_ = " --run " + run.root.string();
  ASSERT_EQ(run_btx("merge" + r_ + " --method average").code, 0);
  ASSERT_EQ(run_btx("merge" + r_ + " --method ensemble --prior uniform --name ensemble-all").code,
            0);
  auto r = run_btx("results" + r_ + " --model seed,merged/average");
  EXPECT_NE(r.code, 0);  // not evaluated yet: say which and how (the seed evaluates itself)
  EXPECT_NE(r.output.find("no evaluation of merged/average (run `btx eval"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(run.root / "results.md"));
  ASSERT_EQ(run_btx("eval" + r_ + " --model seed,merged/average,merged/ensemble-all").code, 0);
  r = run_btx("results" + r_ + " --model seed,merged/average,merged/ensemble-all");
  ASSERT_EQ(r.code, 0) << r.output;

  const auto j = read_json_file(run.root / "results.json");
  ASSERT_EQ(j["rows"].size(), 3u);
  EXPECT_EQ(j["train_domains"], nlohmann::json::array({"code", "prose", "verse"}));
  const auto& seed = j["rows"][0];
  const auto& avg = j["rows"][1];
  const auto& ens = j["rows"][2];
  EXPECT_EQ(seed["model"], "seed");
  // Training tokens: the seed's 40 steps of 8 x 32; the merges add the experts' 3 x 30 steps.
  const int64_t seed_tokens = 40 * 8 * 32, expert_tokens = 30 * 8 * 32;
  EXPECT_EQ(seed["training_tokens"], seed_tokens);
  EXPECT_EQ(avg["training_tokens"], seed_tokens + 3 * expert_tokens);
  EXPECT_EQ(ens["training_tokens"], seed_tokens + 3 * expert_tokens);
  // Training FLOPs: 3 x forward FLOPs per token x tokens, each part at its model's cost; the
  // experts have the seed's shape, and the seed's forward cost is what its evaluation measured
  // (the same window length, 32).
  const double forward = read_json_file(run.eval("seed"))["flops_per_token"].get<double>();
  EXPECT_DOUBLE_EQ(seed["training_flops"].get<double>(), 3.0 * seed_tokens * forward);
  EXPECT_DOUBLE_EQ(avg["training_flops"].get<double>(),
                   3.0 * (seed_tokens + 3 * expert_tokens) * forward);
  // The eval JSON's numbers, and the best per column among them.
  const auto e = read_json_file(run.eval("ensemble-all"));
  EXPECT_DOUBLE_EQ(ens["train_mean_ppl"].get<double>(),
                   e["summary"]["train_mean_ppl"].get<double>());
  EXPECT_DOUBLE_EQ(ens["ppl"]["code"].get<double>(), e["domains"]["code"]["ppl"].get<double>());
  std::string best_mean;
  double lo = 1e300;
  for (const auto& row : j["rows"]) {
    if (row["train_mean_ppl"].get<double>() < lo) {
      lo = row["train_mean_ppl"].get<double>();
      best_mean = row["model"];
    }
  }
  EXPECT_EQ(j["best"]["train_mean_ppl"], best_mean);
  // Every one-model row states its gap to the ensemble of all experts; ensembles do not.
  EXPECT_DOUBLE_EQ(avg["gap_to_ensemble_all"].get<double>(),
                   avg["train_mean_ppl"].get<double>() / ens["train_mean_ppl"].get<double>() - 1);
  EXPECT_TRUE(seed.contains("gap_to_ensemble_all"));
  EXPECT_FALSE(ens.contains("gap_to_ensemble_all"));
  EXPECT_EQ(j["best"]["params_active"], "seed");  // the ensemble runs three models
  EXPECT_EQ(j["best"]["training_tokens"], "seed");
  ASSERT_GE(j["findings"].size(), 1u);
  EXPECT_NE(j["findings"][0].get<std::string>().find("Best on the training domains: " + best_mean),
            std::string::npos);

  // Intervals: every window's loss is in the evaluation (their mean is the domain's loss), and
  // each row's 95% interval is the bootstrap of its windows, around its mean.
  const auto& code = e["domains"]["code"];
  const auto windows = code["window_loss"].get<std::vector<double>>();
  ASSERT_EQ(static_cast<int64_t>(windows.size()),
            code["tokens"].get<int64_t>() / e["seq_len"].get<int64_t>());
  double sum = 0;
  for (const double w : windows) sum += w;
  EXPECT_NEAR(sum / static_cast<double>(windows.size()), code["loss"].get<double>(), 1e-6);
  WindowLosses ens_windows;
  for (const auto& d : j["train_domains"])
    ens_windows.push_back(
        e["domains"][d.get<std::string>()]["window_loss"].get<std::vector<double>>());
  const WindowBootstrap boot(WindowBootstrap::counts_of(ens_windows));
  const auto ci = boot.mean_ppl_interval(ens_windows);
  ASSERT_TRUE(ci);
  EXPECT_DOUBLE_EQ(ens["train_mean_ppl_ci"][0].get<double>(), ci->lo);
  EXPECT_DOUBLE_EQ(ens["train_mean_ppl_ci"][1].get<double>(), ci->hi);
  for (const auto& row : j["rows"]) {
    for (const char* m : {"train_mean_ppl", "novel_mean_ppl"}) {
      const std::string key = std::string(m) + "_ci";
      if (!row.contains(m) || row[m].is_null()) continue;
      ASSERT_TRUE(row.contains(key)) << row["model"] << " " << key;
      EXPECT_LE(row[key][0].get<double>(), row[m].get<double>()) << row["model"];
      EXPECT_GE(row[key][1].get<double>(), row[m].get<double>()) << row["model"];
      EXPECT_LT(row[key][0].get<double>(), row[key][1].get<double>()) << row["model"];
    }
  }
  // Without a learned-routing or dense row no finding compares two rows, so none says how sure
  // (FindingsKeyOnWhatEachModelIsNotOnItsName checks those that do).
  for (const auto& f : j["findings"])
    EXPECT_EQ(f.get<std::string>().find("How sure"), std::string::npos) << f;

  const std::string md = read_file(run.root / "results.md");
  EXPECT_NE(md.find("| model | code | prose | verse | mean | 95% CI | vs ensemble-all |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find(fmt::format(" {:.2f}-{:.2f} |", ci->lo, ci->hi)), std::string::npos) << md;
  EXPECT_NE(md.find(fmt::format(" {:+.1f}% |", 100 * avg["gap_to_ensemble_all"].get<double>())),
            std::string::npos)
      << md;
  EXPECT_NE(md.find(fmt::format("**{:.2f}**", lo)), std::string::npos) << md;
  EXPECT_NE(r.output.find("| ensemble-all |"), std::string::npos) << r.output;

  // --compare: one pair, paired on the same windows, printed and nothing written.
  const auto before = read_file(run.root / "results.md");
  r = run_btx("results" + r_ + " --compare merged/average,merged/ensemble-all");
  ASSERT_EQ(r.code, 0) << r.output;
  const double est =
      ens["train_mean_ppl"].get<double>() / avg["train_mean_ppl"].get<double>() - 1.0;
  EXPECT_NE(r.output.find(fmt::format(
                "ensemble-all vs average (training domains): {:+.2f}% (95% CI ", 100 * est)),
            std::string::npos)
      << r.output;
  EXPECT_EQ(read_file(run.root / "results.md"), before);
  r = run_btx("results" + r_ + " --compare merged/average");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--compare takes two models"), std::string::npos) << r.output;

  // Without --model: every evaluation of the run, the seed first, then experts, then merges;
  // an expert's evaluation (eval/expert-code.json) maps back to experts/code.
  ASSERT_EQ(run_btx("eval" + r_ + " --model experts/code").code, 0);
  r = run_btx("results" + r_);
  ASSERT_EQ(r.code, 0) << r.output;
  const auto all = read_json_file(run.root / "results.json");
  std::vector<std::string> order;
  for (const auto& row : all["rows"]) order.push_back(row["model"]);
  EXPECT_EQ(order, (std::vector<std::string>{"seed", "expert-code", "average", "ensemble-all"}));
  EXPECT_EQ(all["rows"][1]["training_tokens"], seed_tokens + expert_tokens);
}

// The findings find their rows by what each model is (its merge.json and config), whatever
// its folder is called: a uniform average, an ensemble of all experts, a learned-routing MoE
// and sparse upcycling under names of their own.
TEST_F(ResultsTest, FindingsKeyOnWhatEachModelIsNotOnItsName) {
  RunDir run = fresh_run("results-named");
  const std::string r_ = " --run " + run.root.string();
  for (const char* m :
       {"average --name plain-mean", "ensemble --prior uniform --name all-of-them",
        "btx --name mixer", "upcycle --name copies", "hash --name hashed", "dense --name wide"}) {
    ASSERT_EQ(run_btx("merge" + r_ + " --method " + m).code, 0) << m;
  }
  const std::string models =
      "seed,merged/plain-mean,merged/all-of-them,merged/mixer,merged/copies,merged/hashed,"
      "merged/wide";
  ASSERT_EQ(run_btx("eval" + r_ + " --model " + models).code, 0);
  const auto r = run_btx("results" + r_ + " --model " + models);
  ASSERT_EQ(r.code, 0) << r.output;
  const auto j = read_json_file(run.root / "results.json");
  ASSERT_EQ(j["rows"].size(), 7u);
  const auto& mixer = j["rows"][3];
  EXPECT_EQ(mixer["method"], "btx");
  EXPECT_TRUE(mixer["routed"].get<bool>());
  EXPECT_TRUE(mixer["learned_routing"].get<bool>());
  EXPECT_TRUE(mixer["from_experts"].get<bool>());
  EXPECT_TRUE(j["rows"][2]["ensemble"].get<bool>());
  EXPECT_FALSE(j["rows"][4]["from_experts"].get<bool>());  // upcycling: copies of the seed
  EXPECT_TRUE(j["rows"][5]["routed"].get<bool>());
  EXPECT_FALSE(j["rows"][5]["learned_routing"].get<bool>());  // hash routing learns nothing
  // Upcycling spends no expert tokens; the others count the experts'.
  const int64_t seed_tokens = 40 * 8 * 32, expert_tokens = 30 * 8 * 32;
  EXPECT_EQ(j["rows"][4]["training_tokens"], seed_tokens);
  EXPECT_EQ(mixer["training_tokens"], seed_tokens + 3 * expert_tokens);
  std::string findings;
  for (const auto& f : j["findings"]) findings += f.get<std::string>() + "\n";
  EXPECT_NE(findings.find("Uniform parameter averaging (no routing): "), std::string::npos)
      << findings;
  EXPECT_NE(findings.find("the best learned-routing model, mixer ("), std::string::npos)
      << findings;
  EXPECT_NE(findings.find("mixer (0.03M training tokens) vs sparse upcycling (0.01M"),
            std::string::npos)
      << findings;
  EXPECT_NE(findings.find("the ensemble of all experts (0.03M"), std::string::npos) << findings;
  EXPECT_EQ(findings.find("hashed"), std::string::npos) << findings;  // not learned routing
  // The dense model of the experts' tokens is the one trained on as many tokens as the
  // unfinetuned mixer.
  EXPECT_EQ(j["rows"][6]["training_tokens"], mixer["training_tokens"]);
  EXPECT_NE(findings.find("mixer vs the dense model trained on as many tokens (wide, 0.03M): "),
            std::string::npos)
      << findings;
  // Each comparison says how sure it is: the paired difference and whether its interval
  // excludes zero (this run has no novel domains, so no novel comparison).
  EXPECT_NE(findings.find("How sure: mixer vs plain-mean is "), std::string::npos) << findings;
  EXPECT_NE(findings.find("How sure: mixer vs all-of-them is "), std::string::npos) << findings;
  EXPECT_NE(findings.find("How sure: mixer vs wide is "), std::string::npos) << findings;
  EXPECT_EQ(findings.find("How sure (novel)"), std::string::npos) << findings;
  EXPECT_NE(findings.find("paired over the same test windows), an interval that "),
            std::string::npos)
      << findings;
}

}  // namespace
}  // namespace btx
