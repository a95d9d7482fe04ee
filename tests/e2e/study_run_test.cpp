// `btx run` end to end on a tiny corpus: every stage runs once and records its manifest; a second
// run skips them all; a corrupt output is noticed, its stage and those after it run again; a
// config with other values is refused naming the keys; bad [study] entries fail before anything
// is written.
#include <gtest/gtest.h>

#include "btx/util/fs.h"
#include "e2e_util.h"
#include "test_util.h"
#include "tiny_corpus.h"

namespace btx::testing {
namespace {

std::string study_config(const fs::path& corpus, const std::string& methods) {
  return tiny_run_config(corpus, 20, 10) + "[study]\nmethods = [" + methods +
         "]\nbuild_corpus = false\njobs = 2\n";
}

TEST(StudyRun, RunsEveryStageThenSkipsThemAndRedoesACorruptOne) {
  TempDir tmp;
  const auto corpus = make_tiny_corpus(tmp.path() / "corpus", 80'000);
  const fs::path cfg = tmp.path() / "study.toml";
  write_text(
      cfg,
      study_config(
          corpus, R"("average", "ensemble --name ensemble-all", "btx --top-k 1 --name btx-top1")"));
  const fs::path run = tmp.path() / "run";
  const std::string args = cfg.string() + " --run " + run.string();

  auto r = run_btx("run " + args);
  ASSERT_EQ(r.code, 0) << r.output;
  // The table, in the study's order: seed, the methods, the random split after the ensembles.
  const auto results = read_json_file(run / "results.json");
  std::vector<std::string> rows;
  for (const auto& row : results["rows"]) rows.push_back(row["model"]);
  EXPECT_EQ(rows, (std::vector<std::string>{"seed", "average", "ensemble-all", "random-split",
                                            "btx-top1"}));
  EXPECT_NE(r.output.find("| random-split"), std::string::npos) << r.output;
  // The random split's experts trained on shares of the mixture, in their own folder.
  EXPECT_TRUE(fs::exists(run / "random-split" / "experts" / "random_0" / "model.safetensors"));
  // btx-top1 was finetuned in its merge stage.
  EXPECT_TRUE(fs::exists(run / "merged" / "btx-top1" / "metrics.jsonl"));
  for (const char* s :
       {"data", "seed", "experts", "merge/average", "eval/average", "random-split", "results"})
    EXPECT_TRUE(fs::exists(run / "stages" / (std::string(s) + ".json"))) << s;
  // Two stages ran side by side ([study] jobs = 2): after the experts several are ready at once
  // (the merges, the analyses), and the first two start together. Which two depends on the
  // plan's order, so any pair whose times overlap.
  std::vector<std::pair<double, double>> spans;
  for (const auto& e : fs::recursive_directory_iterator(run / "stages")) {
    if (e.path().extension() != ".json") continue;
    const auto st = read_json_file(e.path());
    if (st.contains("started_at") && st.contains("finished_at")) {
      spans.emplace_back(st["started_at"].get<double>(), st["finished_at"].get<double>());
    }
  }
  bool side_by_side = false;
  for (size_t i = 0; i < spans.size(); ++i) {
    for (size_t j = i + 1; j < spans.size(); ++j) {
      side_by_side =
          side_by_side || (spans[i].first < spans[j].second && spans[j].first < spans[i].second);
    }
  }
  EXPECT_TRUE(side_by_side);
  // Not a terminal: plain progress lines, no cursor movement.
  EXPECT_EQ(r.output.find("\x1b["), std::string::npos);

  // Everything is done: nothing runs again.
  const auto seed_mtime = fs::last_write_time(run / "seed" / "model.safetensors");
  r = run_btx("run " + args);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("(0 run now, 17 already done)"), std::string::npos) << r.output;
  EXPECT_EQ(fs::last_write_time(run / "seed" / "model.safetensors"), seed_mtime);

  // A corrupt output: the merge runs again. It rebuilds the same bytes, so the stages that read
  // it see the same inputs and stay done.
  {
    std::string bytes = read_file(run / "merged" / "average" / "model.safetensors");
    bytes[bytes.size() - 1] ^= 0x5a;
    write_text(run / "merged" / "average" / "model.safetensors", bytes);
  }
  r = run_btx("run " + args);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("merge/average"), std::string::npos);
  EXPECT_NE(r.output.find("output merged/average/model.safetensors is corrupt"), std::string::npos)
      << r.output;
  EXPECT_EQ(fs::last_write_time(run / "seed" / "model.safetensors"), seed_mtime);
  EXPECT_NE(r.output.find("(1 run now, 16 already done)"), std::string::npos) << r.output;
  // An evaluation whose output is gone runs again, and the table after it (its input changed
  // only if the numbers did: they are the same here, so results stays done).
  fs::remove(run / "eval" / "average.json");
  r = run_btx("run " + args);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("output eval/average.json is missing"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(run / "eval" / "average.json"));
  r = run_btx("run " + args);  // and all is done again
  EXPECT_NE(r.output.find("(0 run now, 17 already done)"), std::string::npos) << r.output;

  // Another config for the same folder: refused, naming the keys; nothing changed.
  const fs::path other = tmp.path() / "other.toml";
  std::string text = study_config(corpus, R"("average")");
  text.replace(text.find("steps = 20"), 10, "steps = 21");
  write_text(other, text);
  const std::string before = read_file(run / "config.toml");
  r = run_btx("run " + other.string() + " --run " + run.string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("seed.steps = 20 in the run, 21 in the new config"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("--force"), std::string::npos);
  EXPECT_EQ(read_file(run / "config.toml"), before);
  // A dry run of it says what --force would redo: the seed and what follows, not the data.
  r = run_btx("run " + other.string() + " --run " + run.string() + " --dry-run");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("seed                     to run: its inputs changed (config)"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("data                     done"), std::string::npos) << r.output;
}

TEST(StudyRun, BadStudyEntriesFailBeforeAnythingIsWritten) {
  TempDir tmp;
  const auto corpus = make_tiny_corpus(tmp.path() / "corpus", 10'000);
  const fs::path cfg = tmp.path() / "bad.toml";
  const fs::path run = tmp.path() / "run";
  write_text(cfg, study_config(corpus, R"("average", "avrage")"));
  auto r = run_btx("run " + cfg.string() + " --run " + run.string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("study.methods[1] \"avrage\""), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(run));

  std::string text = study_config(corpus, R"("average")");
  text.replace(text.find("\"verse\""), 7, "\"verses\"");
  write_text(cfg, text);
  r = run_btx("run " + cfg.string() + " --run " + run.string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("unknown domain 'verses' (known: code, prose, verse)"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(run));
}

// btx sweep of the finetuning budget: the second point copies every stage that does not read
// [finetune] (its manifest says 0 s, its log is absent) with the same outputs, runs the others,
// and the sweep's table holds both points; run again, nothing runs; values that change nothing
// are refused before any folder is made.
TEST(StudyRun, SweepSharesTheStagesItsValuesDoNotChange) {
  TempDir tmp;
  const auto corpus = make_tiny_corpus(tmp.path() / "corpus", 80'000);
  const fs::path cfg = tmp.path() / "study.toml";
  write_text(cfg, study_config(corpus, R"("average", "btx --top-k 1 --name btx-top1")"));
  const fs::path root = tmp.path() / "sweep";
  const std::string args = "sweep " + cfg.string() + " --run " + root.string();

  auto bad = run_btx(args + " --set name=a,b");
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.output.find("run exactly the same stages"), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(root));

  auto r = run_btx(args + " --set finetune.steps=2,3");
  ASSERT_EQ(r.code, 0) << r.output;
  const fs::path a = root / "finetune.steps=2", b = root / "finetune.steps=3";
  EXPECT_NE(r.output.find("finetune.steps=3: runs"), std::string::npos) << r.output;
  auto manifest = [](const fs::path& run, const std::string& stage) {
    return read_json_file(run / "stages" / (stage + ".json"));
  };
  auto log = [](const fs::path& run, std::string stage) {  // logs/merge-average.log
    std::replace(stage.begin(), stage.end(), '/', '-');
    return run / "logs" / (stage + ".log");
  };
  for (const char* s : {"data", "seed", "experts", "analysis/divergence", "analysis/barriers",
                        "merge/average", "eval/average"}) {
    SCOPED_TRACE(s);
    EXPECT_EQ(manifest(a, s)["outputs_digest"], manifest(b, s)["outputs_digest"]);
    EXPECT_EQ(manifest(b, s)["seconds"].get<double>(), 0.0);  // copied, not run
    EXPECT_TRUE(fs::exists(log(a, s)));
    EXPECT_FALSE(fs::exists(log(b, s)));
  }
  // The finetuned merge ran at each point, to its own budget.
  EXPECT_TRUE(fs::exists(log(b, "merge/btx-top1")));
  EXPECT_NE(manifest(a, "merge/btx-top1")["outputs_digest"],
            manifest(b, "merge/btx-top1")["outputs_digest"]);
  EXPECT_EQ(read_json_file(b / "merged" / "btx-top1" / "state.json")["step"], 3);
  // The table: both points, the shared rows equal, the finetuned one not.
  const auto sweep = read_json_file(root / "sweep.json");
  ASSERT_EQ(sweep["points"].size(), 2u);
  EXPECT_EQ(sweep["axes"][0]["key"], "finetune.steps");
  const auto& pa = sweep["points"][0]["rows"];
  const auto& pb = sweep["points"][1]["rows"];
  EXPECT_EQ(pa["average"]["train_mean_ppl"], pb["average"]["train_mean_ppl"]);
  EXPECT_NE(pa["btx-top1"]["train_mean_ppl"], pb["btx-top1"]["train_mean_ppl"]);
  const std::string md = read_file(root / "sweep.md");
  EXPECT_NE(md.find("| model | finetune.steps=2 | finetune.steps=3 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| btx-top1 |"), std::string::npos) << md;
  EXPECT_NE(read_file(root / "sweep.html").find("btx-data"), std::string::npos);

  // Everything is done: nothing runs again, at either point.
  r = run_btx(args + " --set finetune.steps=2,3");
  ASSERT_EQ(r.code, 0) << r.output;
  size_t done = 0;
  for (size_t at = 0; (at = r.output.find("(0 run now", at)) != std::string::npos; ++at) ++done;
  EXPECT_EQ(done, 2u) << r.output;
}

}  // namespace
}  // namespace btx::testing
