// The study's plan (study/study.h): stage order and content, the domains it checks,
// config key diffs, stage manifests (skip, corrupt output, changed inputs), and the live view's
// plain mode.
#include "btx/study/study.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <set>

#include "btx/study/sub_runs.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/progress.h"
#include "test_util.h"

namespace btx {
namespace {

using testing::TempDir;
using testing::write_text;

RunConfig default_config() {
  return parse_run_config(default_study_config(), "default");
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(StudyPlan, UnknownDomainIsAnErrorListingTheKnownOnes) {
  TempDir tmp;
  RunConfig c = default_config();
  c.corpus.dir = (tmp.path() / "none").string();
  c.corpus.domains = {"scripture", "klingon"};
  const std::string e = error_of([&] { plan_study(btx::Run(RunDir{tmp.path() / "run"}, c)); });
  EXPECT_NE(e.find("unknown domain 'klingon'"), std::string::npos) << e;
  EXPECT_NE(e.find("python_code"), std::string::npos) << e;
  c.study.build_corpus = false;  // then only the folder's domains are known: none here
  c.corpus.domains = {"scripture"};
  EXPECT_NE(error_of([&] {
              plan_study(btx::Run(RunDir{tmp.path() / "run"}, c));
            }).find("unknown domain 'scripture'"),
            std::string::npos);
}

TEST(StudyPlan, FinetuneStagesTrainWhatTheEntrySays) {
  TempDir tmp;
  RunConfig c = default_config();
  c.study.methods = {"btx --finetune router+shared", "smear"};
  std::map<std::string, std::vector<std::vector<std::string>>> commands;
  for (const auto& s : plan_study(btx::Run(RunDir{tmp.path() / "run"}, c)))
    commands[s.name] = s.commands;
  ASSERT_EQ(commands.at("merge/btx").size(), 2u);
  const auto& ft = commands.at("merge/btx")[1];
  EXPECT_EQ(ft[0], "finetune");
  ASSERT_GE(ft.size(), 2u);
  EXPECT_EQ(ft[ft.size() - 2], "--train");
  EXPECT_EQ(ft.back(), "router+shared");
  ASSERT_EQ(commands.at("merge/smear").size(), 2u);
  EXPECT_EQ(commands.at("merge/smear")[1].back(), "--resume");  // all: no --train
  c.study.methods = {"btx --finetune-steps 400"};
  commands.clear();
  for (const auto& s : plan_study(btx::Run(RunDir{tmp.path() / "run1"}, c)))
    commands[s.name] = s.commands;
  const auto& longer = commands.at("merge/btx")[1];
  ASSERT_GE(longer.size(), 2u);
  EXPECT_EQ(longer[longer.size() - 2], "--steps");
  EXPECT_EQ(longer.back(), "400");
  c.experts.mode = ExpertMode::kFlexolmo;
  c.study.methods = {"flexolmo"};
  commands.clear();
  for (const auto& s : plan_study(btx::Run(RunDir{tmp.path() / "run2"}, c)))
    commands[s.name] = s.commands;
  EXPECT_EQ(commands.at("merge/flexolmo").size(), 1u);  // merged, not finetuned
}

// The longest merges are planned first (the runner starts ready stages in plan order): the
// dense baselines, then routed merges by finetuning steps, then the rest; the results table
// keeps the config's order.
TEST(StudyPlan, LongestMergesArePlannedFirstAndResultsKeepTheConfigsOrder) {
  TempDir tmp;
  RunConfig c = default_config();
  c.study.methods = {"average", "btx", "btx --finetune-steps 400 --name btx-400", "dense",
                     "tag --finetune none"};
  c.study.modes = {};
  std::vector<std::string> merges;
  for (const auto& s : plan_study(btx::Run(RunDir{tmp.path() / "run"}, c))) {
    if (s.name.rfind("merge/", 0) == 0) merges.push_back(s.name.substr(6));
  }
  EXPECT_EQ(merges, (std::vector<std::string>{"dense", "btx-400", "btx", "average", "tag"}));
  EXPECT_EQ(study_models(c),
            (std::vector<std::string>{"seed", "merged/average", "merged/btx", "merged/btx-400",
                                      "merged/dense", "merged/tag"}));
}

TEST(StudyPlan, EachStudiedModeIsASubRunSharingTheSeed) {
  TempDir tmp;
  RunConfig c = default_config();
  c.study.modes = {ExpertMode::kFfn, ExpertMode::kFlexolmo};
  std::map<std::string, Stage> stages;
  for (auto& s : plan_study(btx::Run(RunDir{tmp.path() / "run"}, c))) stages.emplace(s.name, s);
  for (const std::string mode : {"ffn", "flexolmo"}) {
    const Stage& s = stages.at("experts-" + mode);
    EXPECT_EQ(s.after, std::vector<std::string>{"seed"});
    EXPECT_TRUE(s.exclusive);
    const std::string sub = (tmp.path() / "run" / ("experts-" + mode)).string();
    ASSERT_GE(s.commands.size(), 5u);
    EXPECT_EQ(s.commands[0], (std::vector<std::string>{"branch", "--run", sub}));
  }
  // ffn experts are dense: their one model is btx, finetuned; flexolmo's is not finetuned.
  const auto& ffn = stages.at("experts-ffn").commands;
  EXPECT_EQ(ffn.back()[0], "finetune");
  EXPECT_EQ(ffn[ffn.size() - 2],
            (std::vector<std::string>{"merge", "--run", (tmp.path() / "run/experts-ffn").string(),
                                      "--method", "btx", "--name", "ffn-btx"}));
  EXPECT_EQ(
      stages.at("experts-flexolmo").commands.back(),
      (std::vector<std::string>{"merge", "--run", (tmp.path() / "run/experts-flexolmo").string(),
                                "--method", "flexolmo", "--name", "flexolmo"}));
  for (const char* row : {"ffn-ensemble", "ffn-average", "ffn-btx", "flexolmo-ensemble",
                          "flexolmo-average", "flexolmo"}) {
    EXPECT_TRUE(stages.count(std::string("eval/") + row)) << row;
  }
  const auto models = study_models(c);
  EXPECT_EQ(models.back(), "experts-flexolmo/merged/flexolmo");
  EXPECT_NE(std::find(models.begin(), models.end(), "experts-ffn/merged/ffn-btx"), models.end());
  // A main method may not take a sub-run row's name.
  c.study.methods = {"average --name ffn-average"};
  EXPECT_NE(error_of([&] { study_methods(c); }).find("the name 'ffn-average' is used twice"),
            std::string::npos);
}

TEST(StudyPlan, ExpertsFromTheOtherSeedAreASubRunWithItsOwnSeed) {
  TempDir tmp;
  RunConfig c = default_config();
  c.study.methods = {"btx", "symphony --from other-seed --name s2",
                     "symphony --take a=/elsewhere --name s3"};
  std::map<std::string, Stage> stages;
  for (auto& s : plan_study(btx::Run(RunDir{tmp.path() / "run"}, c))) stages.emplace(s.name, s);
  const Stage& other = stages.at("other-seed");
  // It trains a seed of its own (not after the run's seed) on the run's data, then its experts.
  EXPECT_EQ(other.after, std::vector<std::string>{"data"});
  const std::string sub = (tmp.path() / "run" / "other-seed").string();
  ASSERT_EQ(other.commands.size(), 3u);
  EXPECT_EQ(other.commands[0], (std::vector<std::string>{"seed", "--run", sub, "--resume"}));
  EXPECT_EQ(other.commands[1], (std::vector<std::string>{"branch", "--run", sub}));
  // Only the entry that takes its experts waits for it.
  const auto& s2 = stages.at("merge/s2").after;
  EXPECT_NE(std::find(s2.begin(), s2.end(), "other-seed"), s2.end());
  EXPECT_EQ(stages.at("merge/s3").after, std::vector<std::string>{"experts"});
  EXPECT_EQ(stages.at("merge/btx").after, std::vector<std::string>{"experts"});
  // Its config: the run's, another random seed, no study.
  const RunConfig oc = other_seed_config(c);
  EXPECT_EQ(oc.seed, c.seed + 1);
  EXPECT_TRUE(oc.study.methods.empty());
  // Without such an entry there is no such stage.
  c.study.methods = {"btx"};
  for (const auto& s : plan_study(btx::Run(RunDir{tmp.path() / "run2"}, c)))
    EXPECT_NE(s.name, "other-seed");
  // A symphony entry without experts of another seed is refused when the study is planned.
  c.study.methods = {"symphony"};
  EXPECT_NE(error_of([&] { study_methods(c); }).find("symphony needs experts of another seed"),
            std::string::npos);
}

TEST(StudyPlan, DiscoveredDomainsAreASubRunClusteredWithTheSeed) {
  TempDir tmp;
  RunConfig c = default_config();
  c.study.clusters = 3;
  std::map<std::string, Stage> stages;
  const fs::path root = tmp.path() / "run";
  for (auto& s : plan_study(btx::Run(RunDir{root}, c))) stages.emplace(s.name, s);
  const Stage& s = stages.at("clusters");
  EXPECT_EQ(s.after, std::vector<std::string>{"seed"});
  const std::string sub = (root / "clusters").string();
  // The training domains clustered by the seed, the clusters tokenized, experts, two ensembles.
  ASSERT_EQ(s.commands.size(), 6u);
  const auto& cluster = s.commands[0];
  EXPECT_EQ(cluster[0], "cluster");
  auto value = [&](const std::string& key) {
    const auto it = std::find(cluster.begin(), cluster.end(), key);
    return it == cluster.end() || it + 1 == cluster.end() ? std::string() : *(it + 1);
  };
  EXPECT_EQ(value("--k"), "3");
  EXPECT_EQ(value("--embed"), "seed");
  EXPECT_EQ(value("--domains"), fmt::format("{}", fmt::join(c.corpus.domains, ",")));
  EXPECT_EQ(value("--out"), fs::absolute(root / "clusters/corpus").string());
  EXPECT_EQ(s.commands[1], (std::vector<std::string>{"prepare", "--run", sub}));
  EXPECT_EQ(s.commands[4], (std::vector<std::string>{"merge", "--run", sub, "--method", "ensemble",
                                                     "--name", "clusters-cached"}));
  EXPECT_EQ(s.commands[5], (std::vector<std::string>{"merge", "--run", sub, "--method", "ensemble",
                                                     "--name", "clusters-routed", "--cluster-model",
                                                     "corpus", "--prior", "cluster"}));
  for (const char* row : {"clusters-cached", "clusters-routed"}) {
    EXPECT_EQ(stages.at(std::string("eval/") + row).after, std::vector<std::string>{"clusters"});
  }
  const auto models = study_models(c);
  EXPECT_EQ(models.back(), "clusters/merged/clusters-routed");
  // The sub-run's config: the clustered text, its K domains, no novel ones.
  const RunConfig sc = clusters_config(c, RunDir{root});
  EXPECT_EQ(sc.corpus.domains,
            (std::vector<std::string>{"cluster_00", "cluster_01", "cluster_02"}));
  EXPECT_TRUE(sc.corpus.novel.empty());
  EXPECT_EQ(sc.study.clusters, 0);
  // One cluster is no clustering.
  c.study.clusters = 1;
  EXPECT_NE(error_of([&] {
              parse_run_config(run_config_to_toml(c), "x");
            }).find("study.clusters must be 0 (none) or at least 2"),
            std::string::npos);
}

TEST(StudyPlan, StagesComeAfterWhatTheyNeedAndCoverEveryMethod) {
  TempDir tmp;
  RunConfig c = default_config();
  c.study.random_split = true;  // in the ablations preset; planned here too
  c.study.modes = {ExpertMode::kFfn, ExpertMode::kFlexolmo};
  const auto stages = plan_study(btx::Run(RunDir{tmp.path() / "run"}, c));
  std::set<std::string> seen;
  for (const auto& s : stages) {
    for (const auto& a : s.after)
      EXPECT_TRUE(seen.count(a)) << s.name << " runs before " << a << ", which it needs";
    EXPECT_TRUE(seen.insert(s.name).second) << "two stages named " << s.name;
    EXPECT_FALSE(s.commands.empty()) << s.name;
    EXPECT_FALSE(s.outputs.empty()) << s.name;
  }
  for (const auto& m : study_methods(c)) {
    EXPECT_TRUE(seen.count("merge/" + m.name)) << m.name;
    EXPECT_TRUE(seen.count("eval/" + m.name)) << m.name;
  }
  for (const char* s : {"corpus", "data", "seed", "experts", "analysis/divergence",
                        "analysis/barriers", "random-split", "eval/random-split", "analysis/btx",
                        "analysis/ensemble-all", "results", "report"})
    EXPECT_TRUE(seen.count(s)) << s;
  // A routed merge is finetuned in the same stage (finetuning rewrites the merge's output).
  for (const auto& s : stages) {
    if (s.name == "merge/btx") {
      ASSERT_EQ(s.commands.size(), 2u);
      EXPECT_EQ(s.commands[1][0], "finetune");
    }
    if (s.name == "merge/average") {
      EXPECT_EQ(s.commands.size(), 1u);
    }
    if (s.name == "experts") {
      EXPECT_EQ(s.progress.size(), c.corpus.domains.size());
    }
  }
  // The table: seed first, the random split after the ensembles.
  const auto models = study_models(c);
  ASSERT_FALSE(models.empty());
  EXPECT_EQ(models.front(), "seed");
  const auto rs = std::find(models.begin(), models.end(), "random-split/merged/random-split");
  ASSERT_NE(rs, models.end());
  EXPECT_EQ(*(rs - 1), "merged/ensemble-all");
}

// The presets in configs/ load and plan: the small one (eight domains, sized for a GPU) is not
// run by the tests, so this is what keeps it in step with the config keys and the methods.
TEST(StudyPlan, EveryPresetLoadsAndPlans) {
  for (const char* preset : {"tiny", "tiny-ablations", "small", "sweep-seed-share", "tiny-seeds"}) {
    SCOPED_TRACE(preset);
    TempDir tmp;
    const RunConfig c =
        load_run_config(fs::path(BTX_SOURCE_DIR) / "configs" / (std::string(preset) + ".toml"));
    const auto stages = plan_study(btx::Run(RunDir{tmp.path() / "run"}, c));
    size_t merges = 0;
    for (const auto& s : stages) {
      merges += s.name.rfind("merge/", 0) == 0;
      if (s.name == "experts") {
        EXPECT_EQ(s.progress.size(), c.corpus.domains.size());
      }
    }
    EXPECT_EQ(merges, study_methods(c).size());
    EXPECT_GE(c.corpus.domains.size(), 4u);
  }
  // The embedded default is configs/tiny.toml.
  EXPECT_EQ(run_config_keys(default_config()),
            run_config_keys(load_run_config(fs::path(BTX_SOURCE_DIR) / "configs" / "tiny.toml")));
}

// Entries finetuned on MetaMoE's proxies: one proxies stage after the experts builds the pool
// corpus and picks the proxies; their merge stages wait for it and finetune on its shards. Two
// entries naming different pools are refused.
TEST(StudyPlan, ProxyEntriesFinetuneOnTheProxiesStage) {
  TempDir tmp;
  RunConfig c = default_config();
  c.study.methods = {"btx --finetune router --proxies glossary,aphorisms --name p", "btx"};
  const btx::Run run(RunDir{tmp.path() / "run"}, c);
  const auto stages = plan_study(run);
  auto find = [&](const std::string& name) {
    auto it =
        std::find_if(stages.begin(), stages.end(), [&](const Stage& s) { return s.name == name; });
    EXPECT_NE(it, stages.end()) << name;
    return it;
  };
  const auto proxies = find("proxies");
  ASSERT_EQ(proxies->commands.size(), 2u);
  const std::vector<std::string> build = {
      "corpus", "build", "--out", proxy_pool_dir(c).string(), "--domains", "glossary,aphorisms"};
  EXPECT_EQ(proxies->commands[0], build);
  const auto& pick = proxies->commands[1];
  EXPECT_EQ(pick.front(), "proxies");
  EXPECT_NE(std::find(pick.begin(), pick.end(), (run.root / "proxies").string()), pick.end());
  EXPECT_EQ(proxies->after, std::vector<std::string>{"experts"});
  EXPECT_LT(std::distance(stages.begin(), find("experts")), std::distance(stages.begin(), proxies));
  const auto p = find("merge/p");
  EXPECT_NE(std::find(p->after.begin(), p->after.end(), "proxies"), p->after.end());
  const auto& finetune = p->commands.at(1);
  const auto data = std::find(finetune.begin(), finetune.end(), "--data");
  ASSERT_NE(data, finetune.end());
  EXPECT_EQ(*(data + 1), (run.root / "proxies" / "data").string());
  const auto plain = find("merge/btx");
  EXPECT_EQ(std::find(plain->commands.at(1).begin(), plain->commands.at(1).end(), "--data"),
            plain->commands.at(1).end());
  c.study.methods = {"btx --finetune router --proxies glossary --name a",
                     "btx --finetune router --proxies aphorisms --name b"};
  const std::string e = error_of([&] { plan_study(btx::Run(RunDir{tmp.path() / "run2"}, c)); });
  EXPECT_NE(e.find("every entry names the same pool domains"), std::string::npos) << e;
}

TEST(StudyPlan, SlurmLauncherSubmitsAndWaits) {
  TempDir tmp;
  RunConfig c = default_config();
  c.study.launcher = "slurm";
  for (const auto& s : plan_study(btx::Run(RunDir{tmp.path() / "run"}, c))) {
    if (s.name != "experts") continue;
    const auto& launch = s.commands.at(1);
    EXPECT_NE(std::find(launch.begin(), launch.end(), "--slurm"), launch.end());
    EXPECT_NE(std::find(launch.begin(), launch.end(), "--wait"), launch.end());
  }
}

TEST(RunConfigKeys, DifferingKeysNamesEachChangedKey) {
  RunConfig a = default_config(), b = a;
  EXPECT_TRUE(differing_keys(a, b).empty());
  b.seed_train.steps += 1;
  b.corpus.novel.push_back("glossary");
  EXPECT_EQ(differing_keys(a, b), (std::vector<std::string>{"corpus.novel", "seed.steps"}));
  EXPECT_EQ(run_config_keys(a).at("seed.steps"), std::to_string(a.seed_train.steps));
}

TEST(InitRun, RefusesAnotherConfigUnlessForcedAndAdoptsStudyChanges) {
  TempDir tmp;
  const RunDir run{tmp.path() / "run"};
  RunConfig a = default_config();
  init_run(btx::Run(run, a));
  // Something made with the config (a run with nothing made adopts any config: InitRun below).
  write_file_atomic(run.tokenizer_file(), "made");
  RunConfig b = a;
  b.study.methods = {"average"};  // [study] is not the run's identity
  init_run(btx::Run(run, b));
  EXPECT_EQ(load_run(run).study.methods, b.study.methods);
  b.model.hidden_size = 256;
  b.data.train_tokens = 5;
  const std::string e = error_of([&] { init_run(btx::Run(run, b)); });
  EXPECT_NE(e.find("2 key(s) differ"), std::string::npos) << e;
  EXPECT_NE(e.find("data.train_tokens = 1000000 in the run, 5 in the new config"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("model.hidden_size"), std::string::npos) << e;
  EXPECT_EQ(load_run(run).model.hidden_size, a.model.hidden_size);  // untouched
  init_run(btx::Run(run, b), /*force=*/true);
  EXPECT_EQ(load_run(run).model.hidden_size, 256);
}

// A first command that failed after writing config.toml left a run that refused the corrected
// config; with nothing made yet (no tokenizer, data or seed) the new config is adopted.
TEST(InitRun, ARunWithNothingMadeAdoptsTheCorrectedConfig) {
  TempDir tmp;
  const RunDir run{tmp.path() / "run"};
  RunConfig a = default_config();
  init_run(btx::Run(run, a));
  RunConfig b = a;
  b.model.hidden_size = 256;
  init_run(btx::Run(run, b));
  EXPECT_EQ(load_run(run).model.hidden_size, 256);
  fs::create_directories(run.seed());
  b.model.hidden_size = 64;
  EXPECT_NE(error_of([&] { init_run(btx::Run(run, b)); }).find("different config"),
            std::string::npos);
}

TEST(StageManifest, SkipsDoneStagesAndNoticesCorruptionAndChangedInputs) {
  TempDir tmp;
  const RunDir run{tmp.path() / "run"};
  const RunConfig c = default_config();
  write_text(run.root / "out" / "a.bin", "alpha");
  write_text(run.root / "out" / "sub" / "b.bin", "beta");
  write_text(run.root / "out" / "x.log", "logs are not outputs");
  Stage s{"merge/x", "test", {"seed"}, {{"merge", "--method", "average"}}, {"out"}, {"seed."}};
  std::map<std::string, std::string> deps = {{"seed", "d1"}};

  auto st = check_stage(btx::Run(run, c), s, deps);
  EXPECT_FALSE(st.done);
  EXPECT_NE(st.reason.find("continuing"), std::string::npos) << st.reason;  // outputs exist
  record_stage(run, s, st, 1.0);
  const auto manifest = read_json_file(stage_manifest_path(run, "merge/x"));
  EXPECT_EQ(manifest["outputs"].size(), 2u);  // the log is not an output
  EXPECT_EQ(manifest["outputs"]["out/a.bin"], sha256_hex("alpha"));
  EXPECT_TRUE(check_stage(btx::Run(run, c), s, deps).done);

  deps["seed"] = "d2";  // the seed was made again
  st = check_stage(btx::Run(run, c), s, deps);
  EXPECT_FALSE(st.done);
  EXPECT_TRUE(st.clean);
  EXPECT_NE(st.reason.find("inputs changed (seed)"), std::string::npos) << st.reason;
  deps["seed"] = "d1";

  RunConfig c2 = c;
  c2.seed_train.steps += 1;
  st = check_stage(btx::Run(run, c2), s, deps);
  EXPECT_NE(st.reason.find("inputs changed (config)"), std::string::npos) << st.reason;
  RunConfig c3 = c;
  c3.finetune.steps += 1;  // a key the stage does not read
  EXPECT_TRUE(check_stage(btx::Run(run, c3), s, deps).done);

  write_text(run.root / "out" / "sub" / "b.bin", "betA");
  st = check_stage(btx::Run(run, c), s, deps);
  EXPECT_TRUE(st.clean);
  EXPECT_NE(st.reason.find("output out/sub/b.bin is corrupt"), std::string::npos) << st.reason;
  fs::remove(run.root / "out" / "sub" / "b.bin");
  EXPECT_NE(check_stage(btx::Run(run, c), s, deps).reason.find("out/sub/b.bin is missing"),
            std::string::npos);
}

TEST(LiveView, PlainModePrintsChangedLinesOnly) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    LiveView v(f, /*plain_interval=*/0.0, /*tty=*/false);
    v.print("start");
    v.update({"step 1"});
    v.update({"step 1"});  // unchanged: not printed again
    v.update({"step 2"});
    v.update({});
  }
  std::rewind(f);
  std::string text;
  for (int ch; (ch = std::fgetc(f)) != EOF;) text += static_cast<char>(ch);
  std::fclose(f);
  EXPECT_EQ(text, "start\nstep 1\nstep 2\n");
}

// A job whose length the plan knows shows step/steps and an ETA from its tokens/s; one whose
// length is decided when it starts (the dense baseline: 0 in the plan) takes its total from
// its records; a job without records is left out.
TEST(StageProgress, LinesShowStepsAndEtaAlsoWhenOnlyTheRecordsKnowTheTotal) {
  TempDir tmp;
  RunDir run{tmp.path() / "run"};
  Stage s;
  s.progress = {{"seed", "seed/metrics.jsonl", 100, 1000},
                {"dense", "merged/dense/metrics.jsonl", 0, 0},
                {"expert code", "experts/code/metrics.jsonl", 50, 1000}};
  write_text(run.root / "seed" / "metrics.jsonl",
             "{\"step\":10,\"loss\":5.0,\"tokens\":10000,\"tokens_per_s\":500}\n"
             "{\"step\":40,\"loss\":4.5,\"tokens\":40000,\"tokens_per_s\":1000}\n");
  // 30 of 90 steps of 4000 tokens at 2000 tokens/s: 60 steps, 240000 tokens, 2 minutes left.
  write_text(run.root / "merged" / "dense" / "metrics.jsonl",
             "{\"step\":30,\"steps\":90,\"loss\":3.25,\"tokens\":120000,"
             "\"tokens_per_s\":2000}\n");
  const auto lines = stage_progress_lines(run, s);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("40/100"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("4.500"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("ETA " + format_eta(60.0)), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("30/90"), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("ETA " + format_eta(120.0)), std::string::npos) << lines[1];
  write_text(run.root / "merged" / "dense" / "metrics.jsonl",
             "{\"step\":90,\"steps\":90,\"loss\":3.0,\"tokens\":360000,"
             "\"tokens_per_s\":2000}\n");
  EXPECT_NE(stage_progress_lines(run, s)[1].find("done"), std::string::npos);
}

TEST(Progress, DurationsReadAsPeopleWriteThem) {
  EXPECT_EQ(format_duration(12.34), "12.3s");
  EXPECT_EQ(format_duration(245), "4m05s");
  EXPECT_EQ(format_duration(3720), "1h02m");
  EXPECT_EQ(format_eta(-1), "");
}

}  // namespace
}  // namespace btx
