// Incremental decoding and token choice: the KV cache gives the logits of full recomputation
// (dense with grouped-query heads, top-2 MoE, hash routing), models that cannot be cached say so,
// and choose_token follows hand-computed cumulative distributions for temperature, top-k, top-p.
#include "btx/pipeline/generate.h"

#include <gtest/gtest.h>

#include "btx/model/llama.h"
#include "btx/util/error.h"
#include "core/moe_util.h"
#include "model_util.h"

namespace btx {
namespace {

using testing::routed_config;
using testing::small_model_config;

// Logits of `ids` (1, T) computed incrementally: the first `prompt` tokens at once, then one at a
// time, concatenated.
torch::Tensor incremental(CausalLM& m, const torch::Tensor& ids, int64_t prompt) {
  KVCache cache;
  std::vector<torch::Tensor> parts = {m->forward_cached(ids.narrow(1, 0, prompt), cache)};
  for (int64_t t = prompt; t < ids.size(1); ++t)
    parts.push_back(m->forward_cached(ids.narrow(1, t, 1), cache));
  EXPECT_EQ(cache.length, ids.size(1));
  return torch::cat(parts, 1);
}

void expect_cache_matches(const ModelConfig& c) {
  torch::manual_seed(5);
  torch::NoGradGuard no_grad;
  CausalLM m(c);
  m->eval();
  ASSERT_TRUE(m->supports_cache());
  const auto ids = torch::randint(0, c.vocab_size, {1, 12}, torch::kInt64);
  const auto full = m->forward(ids);
  const auto inc = incremental(m, ids, 5);
  EXPECT_LT((full - inc).abs().max().item<double>(), 1e-5) << c.model_type << " " << c.router_mode;
}

TEST(KVCache, IncrementalLogitsEqualFullRecomputation) {
  expect_cache_matches(small_model_config(40, 16, 24, 2, 4, 2, 32));  // GQA: 2 kv heads for 4
  expect_cache_matches(routed_config("mixtral", 4, 2, "top-k"));
  expect_cache_matches(routed_config("mixtral", 4, 1, "hash"));
}

TEST(KVCache, ModelsReadingTheSequenceCannotBeCached) {
  CausalLM smear(routed_config("smear", 3, 1, "prefix"));
  EXPECT_FALSE(smear->supports_cache());
  KVCache cache;
  EXPECT_THROW(smear->forward_cached(torch::zeros({1, 2}, torch::kInt64), cache), c10::Error);
  EXPECT_FALSE(CausalLM(routed_config("mixtral", 3, 1, "sample"))->supports_cache());
  // The context bound holds for the cache too.
  CausalLM dense(small_model_config(40, 16, 24, 1, 4, 4, 8));
  KVCache c2;
  dense->forward_cached(torch::zeros({1, 6}, torch::kInt64), c2);
  EXPECT_THROW(dense->forward_cached(torch::zeros({1, 3}, torch::kInt64), c2), c10::Error);
}

TEST(ChooseToken, FollowsTheHandComputedDistribution) {
  // p = (0.5, 0.3, 0.2): cumulative 0.5, 0.8, 1.0.
  const auto logits = torch::log(torch::tensor({0.5, 0.3, 0.2}));
  SamplingOptions greedy;
  EXPECT_EQ(choose_token(logits, greedy, 0.99), 0);
  SamplingOptions t1;
  t1.temperature = 1.0;
  EXPECT_EQ(choose_token(logits, t1, 0.10), 0);
  EXPECT_EQ(choose_token(logits, t1, 0.60), 1);
  EXPECT_EQ(choose_token(logits, t1, 0.85), 2);
  // top-k 2: (0.5, 0.3) renormalised: cumulative 0.625, 1.
  SamplingOptions k2 = t1;
  k2.top_k = 2;
  EXPECT_EQ(choose_token(logits, k2, 0.60), 0);
  EXPECT_EQ(choose_token(logits, k2, 0.70), 1);
  EXPECT_EQ(choose_token(logits, k2, 0.99), 1);  // never the third
  // top-p 0.7: 0.5 < 0.7, 0.8 reaches it: the same two tokens.
  SamplingOptions p7 = t1;
  p7.top_p = 0.7;
  EXPECT_EQ(choose_token(logits, p7, 0.70), 1);
  EXPECT_EQ(choose_token(logits, p7, 0.99), 1);
  // A tiny nucleus or k = 1 is greedy whatever the draw.
  SamplingOptions p_small = t1;
  p_small.top_p = 0.01;
  SamplingOptions k1 = t1;
  k1.top_k = 1;
  for (double u : {0.0, 0.5, 0.999}) {
    EXPECT_EQ(choose_token(logits, p_small, u), 0);
    EXPECT_EQ(choose_token(logits, k1, u), 0);
  }
  // A high temperature flattens: (0.5, 0.3, 0.2)^(1/T) with T large is nearly uniform.
  SamplingOptions hot = t1;
  hot.temperature = 1000;
  EXPECT_EQ(choose_token(logits, hot, 0.34), 1);
  SamplingOptions bad = t1;
  bad.top_p = 0;
  EXPECT_THROW(validate_sampling(bad), Error);
  bad = t1;
  bad.temperature = -1;
  EXPECT_THROW(validate_sampling(bad), Error);
}

}  // namespace
}  // namespace btx
