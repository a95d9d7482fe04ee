// `btx generate` on a tiny trained forest: greedy text is the same with and without the KV cache
// (dense, MoE, and SMEAR, whose prefix router carries its running sum), seeded sampling is
// reproducible, a stop string cuts the text, and bad requests (a prompt longer than the context, an
// ensemble) are clear errors.
#include "btx/generate/generate.h"

#include <gtest/gtest.h>

#include "btx/train/checkpoint.h"
#include "forest_fixture.h"

namespace btx::testing {
namespace {

struct GenerateSuite {};
using GenerateTest = ForestTest<GenerateSuite>;

TEST_F(GenerateTest, CachedAndRecomputedGenerationAgreeAndOptionsWork) {
  const RunDir run = fresh_run("gen");
  const std::string R = run.root.string();
  for (const char* m : {"btx", "smear", "ensemble", "weighted-average --target each"}) {
    auto r = run_btx(std::string("merge --run ") + R + " --method " + m);
    ASSERT_EQ(r.code, 0) << r.output;
  }
  const Tokenizer tok = Tokenizer::load(run.tokenizer_file());
  const auto prompt = tok.encode("def f_1(x):\n    return");
  for (const char* m : {"seed", "merged/btx", "merged/smear"}) {
    CausalLM model = load_model(run.root / m);
    GenerateOptions o;
    o.max_tokens = 20;
    o.stop_at_eos = false;
    std::string streamed;
    const auto cached =
        generate(model, tok, prompt, o, [&](const std::string& t) { streamed += t; });
    o.use_cache = false;
    const auto full = generate(model, tok, prompt, o);
    EXPECT_EQ(cached.tokens, full.tokens) << m;
    EXPECT_EQ(cached.tokens.size(), 20u) << m;
    EXPECT_EQ(cached.finish_reason, FinishReason::kLength);
    EXPECT_EQ(streamed, cached.text) << m;  // streaming delivers exactly the text
    // Seeded sampling: the same seed, the same text; the stop string ends it early.
    o.use_cache = true;
    o.sampling.temperature = 1.0;
    o.sampling.top_p = 0.9;
    o.sampling.seed = 7;
    const auto a = generate(model, tok, prompt, o);
    EXPECT_EQ(a.tokens, generate(model, tok, prompt, o).tokens) << m;
    if (a.text.size() > 3) {
      GenerateOptions s = o;
      s.stop = {a.text.substr(2, 2)};
      std::string out;
      const auto b = generate(model, tok, prompt, s, [&](const std::string& t) { out += t; });
      EXPECT_EQ(b.finish_reason, FinishReason::kStop) << m;
      EXPECT_EQ(b.text, a.text.substr(0, a.text.find(s.stop[0]))) << m;
      EXPECT_EQ(out, b.text) << m;  // nothing of the stop string was streamed
    }
  }
  // The ensemble: its posterior moves with the text; cached and recomputed decoding agree, and
  // the final posterior is a distribution over the three experts that favours the code expert.
  {
    auto cached = open_decoder(ModelFolder::open(run.root / "merged/ensemble"), true);
    auto full = open_decoder(ModelFolder::open(run.root / "merged/ensemble"), false);
    GenerateOptions o;
    o.max_tokens = 16;
    o.stop_at_eos = false;
    const auto a = generate(*cached, tok, prompt, o);
    const auto b = generate(*full, tok, prompt, o);
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_EQ(a.tokens.size(), 16u);
    const auto post = cached->state().at("posterior");
    ASSERT_EQ(post.size(), 3u) << post.dump();
    // The prompt and its continuation are code: the code expert explains them best.
    EXPECT_GT(post.at("code").get<double>(), 0.5) << post.dump();
    double sum = 0;
    for (const auto& [name, w] : post.items()) sum += w.get<double>();
    EXPECT_NEAR(sum, 1.0, 1e-9);
    auto r = run_btx("generate --run " + R +
                     " --model merged/ensemble --max-tokens 16 --prompt 'def f_1(x):\n    return'");
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("posterior: "), std::string::npos) << r.output;
  }
  // The CLI streams the same greedy text.
  CausalLM seed = load_model(run.seed());
  GenerateOptions g;
  g.max_tokens = 12;
  const auto expect = generate(seed, tok, prompt, g);
  auto r = run_btx("generate --run " + R +
                   " --model seed --max-tokens 12 --prompt 'def f_1(x):\n    return'");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(expect.text), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(std::string("finish: ") + name_of(expect.finish_reason)),
            std::string::npos)
      << r.output;

  // Bad requests.
  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += "the quick fox ";
  r = run_btx("generate --run " + R + " --model seed --prompt '" + long_prompt + "'");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("but the model's context is 64"), std::string::npos) << r.output;
  r = run_btx("generate --run " + R + " --model merged/weighted-average --prompt x");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("has no single model to generate from"), std::string::npos) << r.output;
  r = run_btx("generate --run " + R + " --model seed --prompt x --top-p 0");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("top_p must be in (0, 1]"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace btx::testing
