// Combining experts end to end at tiny size, through the btx binary: every routing-free method
// (average, weighted-average, ensemble, dense) builds and evaluates with one command and one JSON
// shape, on training and novel domains; identical experts give the original back; the dense
// baseline spends exactly the experts' tokens; Branch-Train-Stitch trains only its stitches; bad
// input is refused with nothing written.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "btx/analysis/results.h"
#include "btx/io/safetensors.h"
#include "btx/run/experts.h"
#include "btx/run/model_folder.h"
#include "btx/train/checkpoint.h"
#include "e2e_util.h"
#include "forest_fixture.h"

namespace btx {
namespace {

using testing::run_btx;

class MergeTest : public testing::ForestTest<MergeTest> {};

TEST_F(MergeTest, EveryMethodBuildsAndEvaluatesTheSameWay) {
  RunDir run = fresh_run("all");
  const std::string r_ = " --run " + run.root.string();
  for (const std::string& args :
       {std::string("--method average"), std::string("--method weighted-average --target each"),
        std::string("--method weighted-average --target prose --name wa-prose"),
        std::string("--method ensemble --top-k 1 --name ensemble-top1"),
        std::string("--method ensemble --prior updating --name ensemble-updating"),
        std::string("--method dense"),
        std::string("--method dense --match experts+finetune --schedule longer --name dense-ft")}) {
    auto r = run_btx("merge" + r_ + " " + args);
    ASSERT_EQ(r.code, 0) << args << "\n" << r.output;
  }
  // The dense baseline spends exactly the experts' tokens: 3 experts x 30 steps x 8 x 32.
  const auto dense = read_json_file(run.root / "merged/dense/merge.json");
  EXPECT_EQ(dense["result"]["matched_tokens"].get<int64_t>(), 3 * 30 * 8 * 32);
  EXPECT_EQ(load_train_state(run.root / "merged/dense")->tokens, 3 * 30 * 8 * 32);
  int64_t sum = 0;
  for (const auto& e : dense["experts"]) sum += e["tokens"].get<int64_t>();
  EXPECT_EQ(sum, 3 * 30 * 8 * 32);
  // BTM's schedule: the three experts' batches side by side, as many steps as one expert.
  EXPECT_EQ(dense["result"]["batch_size"].get<int64_t>(), 3 * 8);
  EXPECT_EQ(dense["result"]["steps"].get<int64_t>(), 30);
  // Matched to btx: plus the [finetune] budget of 8 steps x 8 x 32 (experts' batch, more steps).
  EXPECT_EQ(load_train_state(run.root / "merged/dense-ft")->tokens, 3 * 30 * 8 * 32 + 8 * 8 * 32);
  // The posterior weights on prose favour the prose expert and sum to 1.
  const auto w = read_json_file(run.root / "merged/wa-prose/merge.json")["result"]["weights"];
  EXPECT_NEAR(w["code"].get<double>() + w["prose"].get<double>() + w["verse"].get<double>(), 1.0,
              1e-9);
  EXPECT_GT(w["prose"].get<double>(), w["code"].get<double>());

  // One eval command for all of them, on the run's domains plus a folder of other text.
  const std::vector<std::string> models = {"seed",
                                           "merged/average",
                                           "merged/weighted-average",
                                           "merged/wa-prose",
                                           "merged/ensemble-top1",
                                           "merged/ensemble-updating",
                                           "merged/dense"};
  std::string list;
  for (const auto& m : models) list += (list.empty() ? "" : ",") + m;
  testing::write_text(run.root / "other" / "glossary.txt",
                      testing::tagged_lines('g', testing::kDictWords, 40'000, 5));
  auto r = run_btx("eval" + r_ + " --model " + list + " --novel " + (run.root / "other").string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("glossary*"), std::string::npos) << r.output;  // comparison table
  const auto seed = read_json_file(run.eval("seed"));
  for (const auto& m : models) {
    const std::string name = fs::path(m).filename().string();
    const auto e = read_json_file(run.eval(name));
    EXPECT_EQ(e["model"], name);
    for (const auto& key : {"domains", "params_total", "params_active", "flops_per_token",
                            "summary", "seq_len", "split"}) {
      EXPECT_TRUE(e.contains(key)) << name << " lacks " << key;
    }
    for (const auto& [d, v] : seed["domains"].items()) {
      ASSERT_TRUE(e["domains"].contains(d)) << name << " lacks domain " << d;
      EXPECT_EQ(e["domains"][d]["tokens"], v["tokens"]) << name << " " << d;  // the same data
      EXPECT_EQ(e["domains"][d]["novel"], v["novel"]);
      EXPECT_GT(e["domains"][d]["ppl"].get<double>(), 1.0);
    }
    EXPECT_TRUE(e["domains"]["glossary"]["novel"].get<bool>());
  }
  // Cost: the top-1 ensemble runs one expert of three; updating runs all three.
  const auto top1 = read_json_file(run.eval("ensemble-top1"));
  EXPECT_EQ(top1["params_total"].get<int64_t>(), 3 * seed["params_total"].get<int64_t>());
  EXPECT_EQ(top1["params_active"], seed["params_active"]);
  EXPECT_EQ(top1["flops_per_token"], seed["flops_per_token"]);
  EXPECT_EQ(read_json_file(run.eval("ensemble-updating"))["params_active"], top1["params_total"]);
  // The cached prior of each domain is recorded, and on a training domain it picks its expert.
  EXPECT_EQ(top1["domains"]["code"]["model"]["experts_run"], nlohmann::json::array({"code"}));
  EXPECT_EQ(top1["domains"]["verse"]["model"]["experts_run"], nlohmann::json::array({"verse"}));

  // Building again is a no-op; other parameters under the same name need --force.
  r = run_btx("merge" + r_ + " --method average");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("up to date"), std::string::npos) << r.output;
  r = run_btx("merge" + r_ + " --method ensemble --top-k 2 --name ensemble-top1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--force"), std::string::npos) << r.output;
}

// Branch-Train-Stitch: the seed and the frozen experts joined by stitches after every layer; only
// the stitches are trained (for [finetune]'s budget) and stored; evaluation runs every model and
// says so in its cost, with the stitches' gates per domain; it generates, refuses export, and a
// hub changed since the merge is noticed.
TEST_F(MergeTest, BranchTrainStitchTrainsAndStoresOnlyTheStitches) {
  RunDir run = fresh_run("bts");
  const std::string r_ = " --run " + run.root.string();
  auto r = run_btx("merge" + r_ + " --method bts --stitch-every 1");
  ASSERT_EQ(r.code, 0) << r.output;
  const fs::path dir = run.root / "merged/bts";
  const auto m = read_json_file(dir / "merge.json");
  EXPECT_EQ(m["kind"], "stitched");
  EXPECT_EQ(m["result"]["stitch_after_layers"], nlohmann::json::array({1, 2}));
  EXPECT_EQ(m["result"]["stitch_tokens"].get<int64_t>(), 8 * 8 * 32);  // [finetune]: 8 steps
  EXPECT_EQ(m["result"]["hub"]["sha256"], sha256_file(run.seed() / "model.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  const auto stitches = load_safetensors(dir / "stitches.safetensors").tensors;
  ASSERT_EQ(stitches.size(), 9u);  // 6 at layer 1 (both directions), 3 at the last layer
  for (const auto& [name, t] : stitches) EXPECT_EQ(name.rfind("stitches.", 0), 0u) << name;
  // Trained: the projections moved from the identity they start at.
  EXPECT_FALSE(torch::allclose(stitches.at("stitches.1.project")[0], torch::eye(48)));

  r = run_btx("eval" + r_ + " --model merged/bts,seed");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto e = read_json_file(run.eval("bts"));
  const auto seed = read_json_file(run.eval("seed"));
  StitchedLM model = ModelFolder::open(dir).stitched();
  EXPECT_EQ(e["params_total"].get<int64_t>(),
            4 * seed["params_total"].get<int64_t>() + model->num_stitch_params());
  EXPECT_EQ(e["params_active"], e["params_total"]);  // every model runs every token
  EXPECT_EQ(e["flops_per_token"].get<int64_t>(),
            model->flops_per_token(e["seq_len"].get<int64_t>()));
  for (const auto& [d, v] : e["domains"].items()) {
    EXPECT_TRUE(std::isfinite(v["loss"].get<double>())) << d;
    const auto& points = v["model"]["stitches"];
    ASSERT_EQ(points.size(), 2u) << d;
    double sum = 0;
    for (const auto& [who, w] : points[0]["mean_gate"].items()) sum += w.get<double>();
    EXPECT_NEAR(sum, 1.0, 1e-6) << d;
    EXPECT_TRUE(points[1]["mean_gate"].contains("hub"));
  }
  // Its training tokens: the seed's 40 steps, the experts' 3 x 30 and the stitches' 8, x 8 x 32.
  EXPECT_EQ(training_tokens(run, "merged/bts"), (40 + 3 * 30 + 8) * 8 * 32);

  r = run_btx("generate" + r_ + " --model merged/bts --max-tokens 6 --prompt 'def f_1(x):'");
  EXPECT_EQ(r.code, 0) << r.output;
  const fs::path exported = run.root / "bts-hf";
  r = run_btx("export --model " + dir.string() + " --out " + exported.string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("Branch-Train-Stitch"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(exported));

  // A stitch every 3 layers of a 2-layer model is refused before anything is written.
  r = run_btx("merge" + r_ + " --method bts --stitch-every 3 --name bts-bad");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("the model has 2 layers"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(run.root / "merged/bts-bad"));
  // The hub retrained since the merge: opening it says so.
  fs::copy_file(expert_dir(run, "code") / "model.safetensors", run.seed() / "model.safetensors",
                fs::copy_options::overwrite_existing);
  r = run_btx("eval" + r_ + " --model merged/bts");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("its hub"), std::string::npos) << r.output;
}

TEST_F(MergeTest, IdenticalExpertsGiveTheOriginalBack) {
  RunDir run = fresh_run("identical");
  const fs::path code = expert_dir(run, "code");
  testing::make_experts_identical(run.root, "code", {"prose", "verse"});
  const std::string r_ = " --run " + run.root.string();
  for (const std::string& args :
       {std::string("--method average"),
        std::string("--method weighted-average --weights code=0.5,prose=0.3,verse=0.2"),
        std::string("--method weighted-average --target verse --name wa-verse"),
        std::string("--method fisher --fisher-windows 4"),
        std::string("--method ensemble --name ens"),
        std::string("--method ensemble --prior updating --top-k 2 --name ens-upd")}) {
    auto r = run_btx("merge" + r_ + " " + args);
    ASSERT_EQ(r.code, 0) << args << "\n" << r.output;
  }
  const auto original = load_safetensors(code / "model.safetensors").tensors;
  for (const char* m : {"average", "weighted-average", "wa-verse"}) {
    const auto merged = load_safetensors(run.root / "merged" / m / "model.safetensors").tensors;
    ASSERT_EQ(merged.size(), original.size());
    for (const auto& [name, t] : original) {
      EXPECT_TRUE(torch::equal(merged.at(name), t)) << m << " " << name;
    }
  }
  // Fisher-weighted: Σ F θ / Σ F of one θ is θ, up to float64 rounding.
  const auto fisher = load_safetensors(run.root / "merged/fisher/model.safetensors").tensors;
  for (const auto& [name, t] : original) {
    EXPECT_TRUE(torch::allclose(fisher.at(name), t, 1e-6, 1e-9)) << name;
  }
  auto r = run_btx("eval" + r_ + " --model experts/code,merged/ens,merged/ens-upd");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto single = read_json_file(run.eval("expert-code"));
  for (const char* m : {"ens", "ens-upd"}) {
    const auto e = read_json_file(run.eval(m));
    for (const auto& [d, v] : single["domains"].items()) {
      EXPECT_NEAR(e["domains"][d]["loss"].get<double>(), v["loss"].get<double>(), 1e-5)
          << m << " " << d;
    }
  }
}

// btx graft: every hybrid of each domain's expert and the average; the two ends are the
// evaluated expert and the evaluated `average` merge, and the Shapley shares add up to the gap.
TEST_F(MergeTest, GraftHybridsEndAtTheExpertAndTheAverageAndSharesAddUp) {
  RunDir run = fresh_run("graft");
  const std::string r_ = " --run " + run.root.string();
  for (const std::string& cmd :
       {"merge" + r_ + " --method average", "graft" + r_, "graft" + r_ + " --reference seed",
        "eval" + r_ + " --model seed,merged/average,experts/code,experts/prose,experts/verse"}) {
    auto r = run_btx(cmd);
    ASSERT_EQ(r.code, 0) << cmd << "\n" << r.output;
  }
  for (const std::string reference : {"average", "seed"}) {
    const auto g = read_json_file(run.root / "analysis" / ("graft-" + reference + ".json"));
    EXPECT_EQ(g["reference"], reference);
    const auto ref_eval = read_json_file(run.eval(reference == "seed" ? "seed" : "average"));
    ASSERT_EQ(g["domains"].size(), 3u);
    for (const auto& d : g["domains"]) {
      const std::string domain = d["domain"];
      EXPECT_EQ(d["expert"], domain);  // the forest's experts are named after their domains
      const auto& hybrids = d["hybrids"];
      ASSERT_EQ(hybrids.size(), 16u);
      EXPECT_TRUE(hybrids[0]["from_expert"].empty());
      EXPECT_EQ(hybrids[15]["from_expert"].size(), 4u);
      // Nothing from the expert: the reference; everything: the expert itself.
      EXPECT_NEAR(hybrids[0]["loss"].get<double>(),
                  ref_eval["domains"][domain]["loss"].get<double>(), 1e-5)
          << reference << " " << domain;
      const auto own = read_json_file(run.eval("expert-" + domain));
      EXPECT_DOUBLE_EQ(hybrids[15]["loss"].get<double>(),
                       own["domains"][domain]["loss"].get<double>())
          << domain;
      double sum = 0, shares = 0;
      for (const auto& [group, phi] : d["shapley"].items()) sum += phi.get<double>();
      for (const auto& [group, s] : d["share"].items()) shares += s.get<double>();
      EXPECT_NEAR(sum, d["gap"].get<double>(), 1e-9) << domain;
      EXPECT_NEAR(sum, hybrids[0]["loss"].get<double>() - hybrids[15]["loss"].get<double>(), 1e-9);
      EXPECT_NEAR(shares, 1.0, 1e-9) << domain;
    }
  }
  auto bad = run_btx("graft" + r_ + " --reference soup");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.output.find("--reference"), std::string::npos) << bad.output;
}

// Fisher-weighted averaging: each expert's mean weight per parameter group adds up to 1 over
// the experts; an MoE merge whose shared layers are the Fisher average (--shared fisher) holds
// exactly the `fisher` merge's tensors outside its FFNs and routers; a graft against it works.
TEST_F(MergeTest, FisherAverageWeighsEachExpertAndServesAsTheSharedLayers) {
  RunDir run = fresh_run("fisher");
  const std::string r_ = " --run " + run.root.string();
  for (const std::string& cmd :
       {"merge" + r_ + " --method fisher --fisher-windows 6",
        "merge" + r_ + " --method btx --shared fisher --fisher-windows 6 --name btx-fisher",
        "graft" + r_ + " --reference merged/fisher", "eval" + r_ + " --model merged/fisher"}) {
    auto r = run_btx(cmd);
    ASSERT_EQ(r.code, 0) << cmd << "\n" << r.output;
  }
  const auto m = read_json_file(run.root / "merged/fisher/merge.json");
  const auto& w = m["result"]["mean_fisher_weight"];
  for (const char* group : {"embedding", "attention", "norm", "ffn"}) {
    double sum = 0;
    for (const char* e : {"code", "prose", "verse"}) {
      const double x = w[group][e].get<double>();
      EXPECT_GT(x, 0.0) << group << " " << e;
      sum += x;
    }
    EXPECT_NEAR(sum, 1.0, 1e-6) << group;
  }
  EXPECT_EQ(m["result"]["fisher_windows"], 6);
  const auto fisher = load_safetensors(run.root / "merged/fisher/model.safetensors").tensors;
  const auto moe = load_safetensors(run.root / "merged/btx-fisher/model.safetensors").tensors;
  int shared = 0;
  for (const auto& [name, t] : moe) {
    if (name.find(".block_sparse_moe.") != std::string::npos) continue;
    ASSERT_TRUE(fisher.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, fisher.at(name))) << name;
    ++shared;
  }
  EXPECT_GT(shared, 0);
  EXPECT_FALSE(fs::exists(run.root / "merged/btx-fisher/fisher-shared"));
  EXPECT_TRUE(read_json_file(run.root / "merged/btx-fisher/merge.json")["result"].contains(
      "shared_fisher"));
  const auto g = read_json_file(run.root / "analysis/graft-fisher.json");
  EXPECT_EQ(g["reference"], "merged/fisher");
  const auto ev = read_json_file(run.eval("fisher"));
  EXPECT_EQ(g["domains"].size(), 3u);
  // The graft's reference end is the fisher model itself.
  for (const auto& d : g["domains"]) {
    EXPECT_DOUBLE_EQ(d["hybrids"][0]["loss"].get<double>(),
                     ev["domains"][d["domain"].get<std::string>()]["loss"].get<double>());
  }
}

TEST_F(MergeTest, BadInputIsRefusedAndWritesNothing) {
  const std::string r_ = " --run " + trained().root.string();
  auto expect_error = [&](const std::string& args, const std::string& says) {
    auto r = run_btx("merge" + r_ + " " + args + " --name bad");
    EXPECT_NE(r.code, 0) << args;
    EXPECT_NE(r.output.find(says), std::string::npos) << args << "\n" << r.output;
    EXPECT_FALSE(fs::exists(trained().root / "merged" / "bad")) << args;
  };
  expect_error("--method soup", "the methods: average, weighted-average, fisher, ensemble, dense");
  expect_error("--method average --top-k 2", "--top-k does not apply to method 'average'");
  expect_error("--method weighted-average", "exactly one of --weights");
  expect_error("--method weighted-average --weights code=1,prose=1",
               "expert 'verse' has no weight");
  expect_error("--method weighted-average --weights code=1,prose=1,verse=1,poetry=1",
               "no expert 'poetry'");
  expect_error("--method weighted-average --weights code=1,prose=-1,verse=1", "negative");
  expect_error("--method weighted-average --weights code=0,prose=0,verse=0",
               "all weights are zero");
  expect_error("--method weighted-average --target legal", "domain 'legal' is neither");
  expect_error("--method ensemble --top-k 4", "top-k 4 is larger than the number of experts (3)");
  expect_error("--method ensemble --top-k 1 --prior uniform", "uniform prior every expert ties");
  expect_error("--method ensemble --prior sometimes", "is not one of: uniform, updating, cached");
  expect_error("--method ensemble --top-k two", "--top-k 'two': expected an integer >= 0");

  // Experts that cannot be merged: unfinished, from another seed, of another shape.
  {
    RunDir run = fresh_run("unfinished");
    auto s = read_json_file(expert_dir(run, "verse") / "state.json");
    s["done"] = false;
    write_file_atomic(expert_dir(run, "verse") / "state.json", s.dump());
    auto r = run_btx("merge --run " + run.root.string() + " --method average");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.output.find("expert 'verse' has not finished training"), std::string::npos)
        << r.output;
    EXPECT_FALSE(fs::exists(run.root / "merged" / "average"));
  }
  {
    RunDir run = fresh_run("reseeded");
    auto j = read_json_file(expert_dir(run, "verse") / "expert.json");
    j["init"]["seed_sha256"] = std::string(64, 'a');
    write_file_atomic(expert_dir(run, "verse") / "expert.json", j.dump());
    auto r = run_btx("merge --run " + run.root.string() + " --method average");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.output.find("experts 'code' and 'verse' were branched from different seeds"),
              std::string::npos)
        << r.output;
  }
  {
    RunDir run = fresh_run("reshaped");
    auto j = read_json_file(expert_dir(run, "prose") / "config.json");
    j["intermediate_size"] = 64;
    write_file_atomic(expert_dir(run, "prose") / "config.json", j.dump());
    auto r = run_btx("merge --run " + run.root.string() + " --method average");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.output.find("experts 'code' and 'prose' have different architectures "
                            "(intermediate_size 96 vs 64)"),
              std::string::npos)
        << r.output;
  }
  // An ensemble whose expert went missing or changed after the merge.
  {
    RunDir run = fresh_run("ensemble-later");
    ASSERT_EQ(run_btx("merge --run " + run.root.string() + " --method ensemble").code, 0);
    fs::copy_file(expert_dir(run, "code") / "model.safetensors",
                  expert_dir(run, "prose") / "model.safetensors",
                  fs::copy_options::overwrite_existing);
    auto r = run_btx("eval --run " + run.root.string() + " --model merged/ensemble");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.output.find("expert 'prose'"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("changed since the merge"), std::string::npos) << r.output;
    fs::copy_file(expert_dir(trained(), "prose") / "model.safetensors",
                  expert_dir(run, "prose") / "model.safetensors",
                  fs::copy_options::overwrite_existing);
    fs::remove_all(expert_dir(run, "verse"));
    r = run_btx("eval --run " + run.root.string() + " --model merged/ensemble");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.output.find("expert 'verse' is missing"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(run.eval("ensemble")));
  }
}

// Leftovers of a crash (found by an attacker): a swap's temporary copy of an expert was counted
// as an expert (merge averaged it twice), and a failing `merge --force` deleted the good model.
TEST_F(MergeTest, LeftoverSwapFoldersAreNoExpertsAndAFailingForceKeepsTheOldModel) {
  RunDir run = fresh_run("leftovers");
  const pid_t gone = [] {
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    ::waitpid(child, nullptr, 0);
    return child;
  }();
  const fs::path stale = expert_dir(run, "code").string() + fmt::format(".tmp-{}-0", gone);
  const fs::path aside = expert_dir(run, "prose").string() + fmt::format(".old.tmp-{}-1", gone);
  fs::copy(expert_dir(run, "code"), stale, fs::copy_options::recursive);
  fs::rename(expert_dir(run, "prose"), aside);  // killed between the two renames of a swap

  auto r = run_btx("status --run " + run.root.string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("restored " + expert_dir(run, "prose").string()), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("removed " + stale.string()), std::string::npos) << r.output;
  size_t rows = 0;
  for (size_t at = r.output.find("\nexpert "); at != std::string::npos;
       at = r.output.find("\nexpert ", at + 1)) {
    ++rows;
  }
  EXPECT_EQ(rows, 3u) << r.output;
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists(aside));
  EXPECT_TRUE(fs::exists(expert_dir(run, "prose") / "model.safetensors"));

  // Merge sees three experts, never the leftover, which it also cleans.
  fs::copy(expert_dir(run, "code"), stale, fs::copy_options::recursive);
  r = run_btx("merge --run " + run.root.string() + " --method average");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(read_json_file(run.root / "merged" / "average" / "merge.json")["experts"].size(), 3u);
  EXPECT_FALSE(fs::exists(stale));

  // A failing rebuild with --force keeps the model it was to replace.
  ASSERT_EQ(run_btx("merge --run " + run.root.string() + " --method dense").code, 0);
  const std::string before = read_file(run.root / "merged" / "dense" / "model.safetensors");
  const auto seed_file = run.seed() / "model.safetensors";
  const std::string seed = read_file(seed_file);
  write_file_atomic(seed_file, seed.substr(0, seed.size() / 2));
  r = run_btx("merge --run " + run.root.string() + " --method dense --force");
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(seed_file.string()), std::string::npos) << r.output;
  EXPECT_EQ(read_file(run.root / "merged" / "dense" / "model.safetensors"), before);
  for (const auto& e : fs::directory_iterator(run.root / "merged")) {
    EXPECT_FALSE(is_temp_name(e.path().filename().string())) << e.path();
  }
}

}  // namespace
}  // namespace btx
