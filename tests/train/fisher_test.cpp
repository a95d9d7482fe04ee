// The diagonal Fisher of train/fisher.h: its definition (the mean over windows of each window's
// squared gradient), zero exactly where the text does not reach (the input embedding rows of
// tokens it never reads, in an untied model), and the model left as it was.
#include "btx/train/fisher.h"

#include <gtest/gtest.h>

#include "model_util.h"
#include "test_util.h"

namespace btx {
namespace {

CausalLM untied_model() {
  auto c = testing::small_model_config(/*vocab=*/32, /*hidden=*/16, /*inner=*/24, /*layers=*/2,
                                       /*heads=*/2, /*kv_heads=*/2, /*context=*/16);
  c.tie_word_embeddings = false;
  torch::manual_seed(7);
  CausalLM m(c);
  m->init_weights();
  return m;
}

TEST(Fisher, IsTheMeanSquaredGradientOfEachWindow) {
  CausalLM m = untied_model();
  const auto windows = torch::tensor({{1, 2, 3, 1, 2}, {3, 3, 1, 2, 1}}, torch::kInt64);
  const auto fisher = diagonal_fisher(m, windows);
  // By hand: one backward per window, squared, averaged.
  std::map<std::string, torch::Tensor> expected;
  for (int64_t i = 0; i < 2; ++i) {
    m->zero_grad();
    token_nll(m, windows.narrow(0, i, 1)).sum().backward();
    for (const auto& p : m->named_parameters()) {
      auto g2 = p.value().grad().square() / 2.0;
      expected[p.key()] = i == 0 ? g2 : expected[p.key()] + g2;
    }
  }
  ASSERT_EQ(fisher.size(), expected.size());
  for (const auto& [name, f] : fisher) {
    EXPECT_TRUE(torch::allclose(f, expected.at(name), 1e-5, 1e-12)) << name;
    EXPECT_GE(f.min().item<double>(), 0.0) << name;
  }
  // Tokens 0 and 4..31 are never read: their input embedding rows do not matter to this text.
  const auto& emb = fisher.at("model.embed_tokens.weight");
  EXPECT_EQ(emb[0].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(emb.narrow(0, 4, 28).abs().sum().item<double>(), 0.0);
  EXPECT_GT(emb[1].sum().item<double>(), 0.0);
  // The LM head's rows all matter (the softmax pushes every token down).
  EXPECT_GT(fisher.at("lm_head.weight")[0].sum().item<double>(), 0.0);
}

TEST(Fisher, LeavesTheModelAsItWas) {
  CausalLM m = untied_model();
  m->train();
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : m->named_parameters()) before[p.key()] = p.value().detach().clone();
  diagonal_fisher(m, torch::tensor({{1, 2, 3, 4}}, torch::kInt64));
  EXPECT_TRUE(m->is_training());
  for (const auto& p : m->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), before.at(p.key()))) << p.key();
    EXPECT_FALSE(p.value().grad().defined()) << p.key();
  }
  EXPECT_EQ(testing::error_of([&] {
              diagonal_fisher(m, torch::zeros({0, 4}, torch::kInt64));
            }),
            "Fisher information needs at least one window of two tokens, got a tensor of shape "
            "(0, 4)");
}

}  // namespace
}  // namespace btx
