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
  // Two stages ran side by side ([study] jobs = 2): the merges, ready together after the experts,
  // the longest (btx-top1 finetunes) beside the first of the others.
  const auto a = read_json_file(run / "stages" / "merge" / "average.json");
  const auto b = read_json_file(run / "stages" / "merge" / "btx-top1.json");
  EXPECT_LT(a["started_at"].get<double>(), b["finished_at"].get<double>());
  EXPECT_LT(b["started_at"].get<double>(), a["finished_at"].get<double>());
  // Not a terminal: plain progress lines, no cursor movement.
  EXPECT_EQ(r.output.find("\x1b["), std::string::npos);

  // Everything is done: nothing runs again.
  const auto seed_mtime = fs::last_write_time(run / "seed" / "model.safetensors");
  r = run_btx("run " + args);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("(0 run now, 15 already done)"), std::string::npos) << r.output;
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
  EXPECT_NE(r.output.find("(1 run now, 14 already done)"), std::string::npos) << r.output;
  // An evaluation whose output is gone runs again, and the table after it (its input changed
  // only if the numbers did: they are the same here, so results stays done).
  fs::remove(run / "eval" / "average.json");
  r = run_btx("run " + args);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("output eval/average.json is missing"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(run / "eval" / "average.json"));
  r = run_btx("run " + args);  // and all is done again
  EXPECT_NE(r.output.find("(0 run now, 15 already done)"), std::string::npos) << r.output;

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

}  // namespace
}  // namespace btx::testing
