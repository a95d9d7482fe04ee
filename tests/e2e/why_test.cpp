// Why merging fails, end to end on the trained forest (3 experts: code, prose, verse): loss
// barriers whose ends are exactly the evaluated models and that are flat between a model and
// itself, the experts' divergence (zero between identical experts, consistent with the law of
// cosines otherwise), per-token gains of a routed model and an ensemble, and bad input refused
// before anything is scored.
#include <gtest/gtest.h>

#include <cmath>

#include "btx/run/experts.h"
#include "btx/util/fs.h"
#include "e2e_util.h"
#include "forest_fixture.h"

namespace btx {
namespace {

using testing::run_btx;

class WhyTest : public testing::ForestTest<WhyTest> {};

TEST_F(WhyTest, BarrierEndsAreTheModelsAndAModelWithItselfIsFlat) {
  RunDir run = fresh_run("barrier");
  const std::string r_ = " --run " + run.root.string();
  for (const std::string& cmd :
       {"barrier" + r_ + " --a experts/code --b experts/code --points 3",
        "barrier" + r_ + " --a seed --b experts/prose --points 4",
        "barrier" + r_ + " --pairs --points 3",
        "eval" + r_ + " --model seed,experts/code,experts/prose,experts/verse"}) {
    auto r = run_btx(cmd);
    ASSERT_EQ(r.code, 0) << cmd << "\n" << r.output;
  }
  const auto self = read_json_file(run.root / "analysis/barrier-expert-code--expert-code.json");
  ASSERT_EQ(self["domains"].size(), 3u);
  EXPECT_EQ(self["alphas"], (nlohmann::json{0.0, 0.5, 1.0}));
  for (const auto& d : self["domains"]) {
    const auto loss = d["loss"].get<std::vector<double>>();
    ASSERT_EQ(loss.size(), 3u);
    // (1-α)θ + αθ is θ up to one rounding per element: the same loss to float precision.
    EXPECT_DOUBLE_EQ(loss[0], loss[2]);
    EXPECT_NEAR(loss[1], loss[0], 1e-5);
    EXPECT_NEAR(d["barrier"].get<double>(), 0.0, 1e-5);
    EXPECT_NEAR(d["barrier_linear"].get<double>(), 0.0, 1e-5);
  }
  // The ends of every path are the evaluated models, exactly.
  auto check_ends = [&](const nlohmann::json& p) {
    const auto a = read_json_file(run.eval(p["a"].get<std::string>()));
    const auto b = read_json_file(run.eval(p["b"].get<std::string>()));
    for (const auto& d : p["domains"]) {
      const std::string domain = d["domain"];
      EXPECT_DOUBLE_EQ(d["loss"].front().get<double>(), a["domains"][domain]["loss"].get<double>())
          << p["a"] << " " << domain;
      EXPECT_DOUBLE_EQ(d["loss"].back().get<double>(), b["domains"][domain]["loss"].get<double>())
          << p["b"] << " " << domain;
      // The heights follow from the curve.
      const auto loss = d["loss"].get<std::vector<double>>();
      const double top = *std::max_element(loss.begin(), loss.end());
      EXPECT_NEAR(d["barrier"].get<double>(), top - (loss.front() + loss.back()) / 2, 1e-12);
      EXPECT_GE(d["barrier_linear"].get<double>(), 0.0);
    }
  };
  const auto one = read_json_file(run.root / "analysis/barrier-seed--expert-prose.json");
  EXPECT_EQ(one["alphas"].size(), 4u);
  check_ends(one);
  const auto all = read_json_file(run.root / "analysis/barriers.json");
  ASSERT_EQ(all["paths"].size(), 6u);  // 3 pairs of experts, 3 experts from the seed
  std::vector<std::string> names;
  for (const auto& p : all["paths"]) {
    names.push_back(p["a"].get<std::string>() + ">" + p["b"].get<std::string>());
    check_ends(p);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"expert-code>expert-prose", "expert-code>expert-verse",
                                             "expert-prose>expert-verse", "seed>expert-code",
                                             "seed>expert-prose", "seed>expert-verse"}));
}

TEST_F(WhyTest, BarrierRefusesModelsThatCannotBeInterpolated) {
  RunDir run = fresh_run("barrier-bad");
  const std::string r_ = " --run " + run.root.string();
  for (const std::string& cmd :
       {"merge" + r_ + " --method ensemble", "merge" + r_ + " --method btx"}) {
    auto r = run_btx(cmd);
    ASSERT_EQ(r.code, 0) << cmd << "\n" << r.output;
  }
  // An expert branched from another seed (its record says so).
  auto spec = read_json_file(run.root / "experts/verse/expert.json");
  spec["init"]["seed_sha256"] = std::string(64, 'a');
  write_file_atomic(run.root / "experts/verse/expert.json", spec.dump(2));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --a experts/code --b merged/btx", "different model configs"},
      {" --a experts/code --b merged/ensemble", "is not a checkpoint"},
      {" --a experts/code --b experts/verse", "vs aaaaaaaaaaaa...): the straight path"},
      {" --a experts/code", "--a and --b go together"},
      {" --a experts/code --b experts/prose --pairs", "give --a MODEL and --b MODEL, or --pairs"},
      {" --a experts/code --b experts/prose --points 1", "--points 1: expected 2 to 1001"},
      {" --a experts/code --b experts/nosuch", "does not exist"},
  };
  for (const auto& [args, message] : cases) {
    auto r = run_btx("barrier" + r_ + args);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_NE(r.output.find(message), std::string::npos) << args << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << args << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(run.root / "analysis/barrier-expert-code--merged-btx.json"));
  EXPECT_FALSE(fs::exists(run.root / "analysis/barriers.json"));
}

TEST_F(WhyTest, DivergenceOfIdenticalExpertsIsZeroAndOtherwiseAddsUp) {
  RunDir run = fresh_run("divergence");
  auto r = run_btx("analyze --run " + run.root.string() + " --divergence");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("from seed"), std::string::npos) << r.output;
  const auto dv = read_json_file(run.root / "analysis/divergence.json");
  EXPECT_EQ(dv["experts"], (nlohmann::json{"code", "prose", "verse"}));
  // Every cell: the law of cosines ties the distances together, and the average moves less than
  // the experts do on average (the triangle inequality).
  ASSERT_FALSE(dv["cells"].empty());
  for (const auto& c : dv["cells"]) {
    for (int a = 0; a < 3; ++a) {
      for (int b = 0; b < 3; ++b) {
        const double fa = c["from_seed"][a], fb = c["from_seed"][b], cos = c["cosine"][a][b];
        const double between = c["between"][a][b];
        EXPECT_NEAR(between * between, fa * fa + fb * fb - 2 * cos * fa * fb, 1e-9)
            << c["layer"] << " " << c["group"];
      }
    }
    EXPECT_LE(c["mean_update"].get<double>(), c["mean_from_seed"].get<double>() + 1e-12);
  }
  EXPECT_GT(dv["total"]["mean_from_seed"].get<double>(), 0.0);  // the experts trained

  testing::make_experts_identical(run.root, "code", {"prose", "verse"});
  r = run_btx("analyze --run " + run.root.string() + " --divergence");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto same = read_json_file(run.root / "analysis/divergence.json");
  for (const auto& c : same["cells"]) {
    EXPECT_DOUBLE_EQ(c["mean_between"].get<double>(), 0.0) << c["layer"] << " " << c["group"];
    EXPECT_NEAR(c["mean_update"].get<double>(), c["from_seed"][0].get<double>(), 1e-12);
  }
  // An expert that is the seed itself is 0 from it.
  fs::copy_file(run.seed() / "model.safetensors", run.root / "experts/code/model.safetensors",
                fs::copy_options::overwrite_existing);
  r = run_btx("analyze --run " + run.root.string() + " --divergence");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_DOUBLE_EQ(
      read_json_file(run.root / "analysis/divergence.json")["total"]["from_seed"][0].get<double>(),
      0.0);
  // Divergence takes no --model.
  r = run_btx("analyze --run " + run.root.string() + " --divergence --model merged/x");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("give no --model"), std::string::npos) << r.output;
}

TEST_F(WhyTest, TokenGainsOfARoutedModelAndAnEnsemble) {
  RunDir run = fresh_run("gains");
  const std::string r_ = " --run " + run.root.string();
  for (const std::string& cmd :
       {"merge" + r_ + " --method ensemble --name ens", "merge" + r_ + " --method btx",
        "analyze" + r_ + " --model merged/ens,merged/btx"}) {
    auto r = run_btx(cmd);
    ASSERT_EQ(r.code, 0) << cmd << "\n" << r.output;
  }
  for (const char* m : {"ens", "btx"}) {
    const auto a = read_json_file(run.root / "analysis" / (std::string(m) + ".json"));
    ASSERT_TRUE(a.contains("token_gain")) << m;
    const auto& g = a["token_gain"];
    EXPECT_EQ(g["bins"], 10);
    for (const char* ref : {"average", "seed"}) {
      const auto& t = g["references"][ref]["training"];
      // Pooled over the training domains: each domain's windows, every bin a tenth of them.
      int64_t tokens = 0;
      for (const auto& [d, v] : g["references"][ref]["domains"].items()) {
        if (v.contains("tokens"))
          tokens += std::find(g["novel_domains"].begin(), g["novel_domains"].end(), d) ==
                            g["novel_domains"].end()
                        ? v["tokens"].get<int64_t>()
                        : 0;
      }
      EXPECT_EQ(t["tokens"].get<int64_t>(), tokens) << m << " " << ref;
      double shares = 0, weighted = 0;
      for (const auto& b : t["bins"]) {
        shares += b["share"].get<double>();
        weighted += b["gain_mean"].get<double>() * b["tokens"].get<double>();
        EXPECT_LE(b["entropy_lo"].get<double>(), b["entropy_mean"].get<double>());
        EXPECT_LE(b["entropy_mean"].get<double>(), b["entropy_hi"].get<double>());
      }
      EXPECT_NEAR(shares, 1.0, 1e-9) << m << " " << ref;
      EXPECT_NEAR(weighted / static_cast<double>(tokens), t["gain"].get<double>(), 1e-9);
      // Deciles rise in entropy.
      for (size_t k = 1; k < t["bins"].size(); ++k) {
        EXPECT_GE(t["bins"][k]["entropy_lo"].get<double>(),
                  t["bins"][k - 1]["entropy_hi"].get<double>());
      }
    }
    // gain(seed) - gain(average) = nll(seed) - nll(average): the same for every model.
  }
  const auto ens = read_json_file(run.root / "analysis/ens.json")["token_gain"]["references"];
  const auto btx = read_json_file(run.root / "analysis/btx.json")["token_gain"]["references"];
  EXPECT_NEAR(ens["seed"]["training"]["gain"].get<double>() -
                  ens["average"]["training"]["gain"].get<double>(),
              btx["seed"]["training"]["gain"].get<double>() -
                  btx["average"]["training"]["gain"].get<double>(),
              1e-9);
  // The routed model's router per decile: shares of own-domain top-1 choices.
  const auto router =
      read_json_file(run.root / "analysis/btx.json")["token_gain"]["router"]["training"];
  ASSERT_EQ(router["own_top1"].size(), 10u);
  for (const auto& v : router["own_top1"]) {
    EXPECT_GE(v.get<double>(), 0.0);
    EXPECT_LE(v.get<double>(), 1.0);
  }
  for (const auto& v : router["router_entropy"]) EXPECT_GE(v.get<double>(), 0.0);
}

}  // namespace
}  // namespace btx
