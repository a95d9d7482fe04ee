// End to end at tiny size: corpus -> tokenizer -> shards -> seed -> eval, through the library
// and through the btx binary; resume equals an uninterrupted run; bad input keeps what exists.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "btx/data/shards.h"
#include "btx/run/run_dir.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "e2e_util.h"
#include "tiny_corpus.h"

namespace btx {
namespace {

using testing::read_metrics;
using testing::run_btx;

double unigram_entropy(const TokenShard& shard) {
  auto counts = torch::bincount(shard.slice(0, shard.size())).to(torch::kDouble);
  auto p = counts / counts.sum();
  p = p.masked_select(p > 0);
  return -(p * p.log()).sum().item<double>();
}

TEST(SeedEndToEnd, CliTrainsAndBeatsUnigramEntropy) {
  testing::TempDir dir;
  auto corpus = testing::make_tiny_corpus(dir / "corpus", 120'000);
  testing::write_text(dir / "run.toml", testing::tiny_run_config(corpus, 120));
  auto r =
      run_btx("seed --config " + (dir / "run.toml").string() + " --run " + (dir / "run").string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("valid split"), std::string::npos) << r.output;

  RunDir run{dir / "run"};
  EXPECT_TRUE(fs::exists(run.config_file()));
  EXPECT_TRUE(fs::exists(run.tokenizer_file()));
  EXPECT_TRUE(is_checkpoint(run.seed()));
  auto state = load_train_state(run.seed());
  ASSERT_TRUE(state);
  EXPECT_TRUE(state->done);
  EXPECT_EQ(state->step, 120);

  auto eval = nlohmann::json::parse(read_file(run.eval("seed")));
  const ShardSet data = ShardSet::open(run.data());
  for (const auto& d : data.domains()) {
    const double h = unigram_entropy(data.shard(d, "train"));
    const double loss = eval["domains"][d]["loss"].get<double>();
    EXPECT_LT(loss, 0.6 * h) << d << ": test loss " << loss << " vs unigram entropy " << h;
  }
  EXPECT_GT(eval["params_total"].get<int64_t>(), 0);
  EXPECT_GT(eval["flops_per_token"].get<int64_t>(), 2 * eval["params_total"].get<int64_t>() / 2);

  // Running it again finds the finished stages and retrains nothing.
  const auto before = read_file(run.seed() / "model.safetensors");
  r = run_btx("seed --run " + run.root.string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("skipping"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(run.seed() / "model.safetensors"), before);

  // btx eval on the same checkpoint, JSON shape of the issue, novel domains on the fly.
  testing::write_text(dir / "novel" / "other.txt", testing::tiny_domain_text(0, 20'000, 99));
  r = run_btx("eval --model " + run.seed().string() + " --data " + run.data().string() +
              " --novel " + (dir / "novel").string() + " --json");
  ASSERT_EQ(r.code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["model"], "seed");
  for (const char* d : {"code", "prose", "verse", "other"}) {
    ASSERT_TRUE(j["domains"].contains(d)) << d;
    EXPECT_GT(j["domains"][d]["tokens"].get<int64_t>(), 0);
    EXPECT_NEAR(j["domains"][d]["ppl"].get<double>(),
                std::exp(j["domains"][d]["loss"].get<double>()), 1e-6);
  }
  EXPECT_TRUE(j["domains"]["other"]["novel"].get<bool>());
  EXPECT_EQ(j["params_active"], j["params_total"]);
}

TEST(SeedEndToEnd, ResumedRunEqualsUninterrupted) {
  testing::TempDir dir;
  auto corpus = testing::make_tiny_corpus(dir / "corpus", 80'000);
  const RunConfig c = parse_run_config(testing::tiny_run_config(corpus, 50), "tiny.toml");
  const btx::Run a(RunDir{dir / "a"}, c), b(RunDir{dir / "b"}, c);
  for (const btx::Run* run : {&a, &b}) {
    init_run(*run);
    ensure_tokenizer(*run);
    ensure_data(*run);
  }
  ASSERT_TRUE(train_seed(a, false).finished);
  // b: interrupted after step 30 (checkpoints every 20), then resumed.
  ASSERT_FALSE(train_seed(b, false, 30).finished);
  EXPECT_EQ(load_train_state(b.seed())->step, 30);
  EXPECT_THROW(train_seed(b, /*resume=*/false), Error);  // an unfinished run is not overwritten
  ASSERT_TRUE(train_seed(b, true).finished);

  auto ma = read_metrics(a.seed() / "metrics.jsonl");
  auto mb = read_metrics(b.seed() / "metrics.jsonl");
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i)
    EXPECT_EQ(ma[i].value("loss", -1.0), mb[i].value("loss", -1.0)) << i;
  EXPECT_EQ(read_file(a.seed() / "model.safetensors"), read_file(b.seed() / "model.safetensors"));
}

TEST(SeedEndToEnd, BadInputIsOneClearLineAndDamagesNothing) {
  testing::TempDir dir;
  auto corpus = testing::make_tiny_corpus(dir / "corpus", 80'000);
  testing::write_text(dir / "bad.toml", "typo_key = 1\n" + testing::tiny_run_config(corpus, 10));
  auto r =
      run_btx("seed --config " + (dir / "bad.toml").string() + " --run " + (dir / "run").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("unknown key 'typo_key'"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "run" / "config.toml"));

  // A first command that fails after writing config.toml (here: a missing corpus) made nothing:
  // the corrected config is adopted (it was refused as "a different config").
  testing::write_text(dir / "good.toml", testing::tiny_run_config(corpus, 10));
  const btx::Run run(RunDir{dir / "run"},
                     parse_run_config(read_file(dir / "good.toml"), "good.toml"));
  init_run(run);
  std::string broken = testing::tiny_run_config(dir / "no-corpus", 10);
  testing::write_text(dir / "broken.toml", broken);
  r = run_btx("prepare --config " + (dir / "broken.toml").string() + " --run " + run.root.string());
  EXPECT_NE(r.code, 0) << r.output;
  r = run_btx("prepare --config " + (dir / "good.toml").string() + " --run " + run.root.string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("nothing was made with its config yet"), std::string::npos) << r.output;

  // A run that has made something with one config refuses another and keeps its own...
  const auto config_before = read_file(run.config_file());
  const auto tokenizer_before = read_file(run.tokenizer_file());
  testing::write_text(dir / "other.toml", testing::tiny_run_config(corpus, 11));
  r = run_btx("prepare --config " + (dir / "other.toml").string() + " --run " + run.root.string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("different config"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(run.config_file()), config_before);
  // ... unless told to adopt it: a changed [seed] keeps the tokenizer and data.
  r = run_btx("prepare --force --config " + (dir / "other.toml").string() + " --run " +
              run.root.string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(load_run(run).seed_train.steps, 11);
  EXPECT_EQ(read_file(run.tokenizer_file()), tokenizer_before);

  // A folder as --config is named, not read as an empty config.
  r = run_btx("prepare --config " + dir.path().string() + " --run " + run.root.string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("not a regular file (a folder)"), std::string::npos) << r.output;

  // Missing corpus domain, and a checkpoint of another architecture.
  r = run_btx("eval --model " + (dir / "nope").string() + " --data " + (dir / "nope").string());
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

}  // namespace
}  // namespace btx
