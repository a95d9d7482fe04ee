// Grafting's arithmetic: exact Shapley values from coalition values (hand-computed games), and
// the parameter groups a dense model's tensors belong to.
#include "btx/analysis/graft.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace btx {
namespace {

TEST(Shapley, TwoPlayersByHand) {
  // v(∅) = 0, v({0}) = 1, v({1}) = 2, v({0,1}) = 4: each ordering gives player 0 either 1 (first)
  // or 4 - 2 = 2 (second), so φ0 = 1.5 and φ1 = (2 + 3) / 2 = 2.5.
  const auto phi = shapley_values({0, 1, 2, 4}, 2);
  ASSERT_EQ(phi.size(), 2u);
  EXPECT_DOUBLE_EQ(phi[0], 1.5);
  EXPECT_DOUBLE_EQ(phi[1], 2.5);
}

TEST(Shapley, AdditiveGameGivesEachPlayerItsOwnValue) {
  const std::vector<double> own = {0.5, -0.25, 2.0, 0.125};
  std::vector<double> v(16, 0.0);
  for (size_t m = 0; m < 16; ++m) {
    for (int g = 0; g < 4; ++g) v[m] += (m >> g & 1) ? own[g] : 0.0;
  }
  const auto phi = shapley_values(v, 4);
  for (int g = 0; g < 4; ++g) EXPECT_NEAR(phi[g], own[g], 1e-12) << g;
}

TEST(Shapley, ThreePlayersWithAnInteractionSplitItEvenly) {
  // Only the coalition of players 0 and 2 together is worth 3 (player 1 adds nothing): 0 and 2
  // share it, 1.5 each, in every ordering's average.
  std::vector<double> v(8, 0.0);
  v[0b101] = v[0b111] = 3.0;
  const auto phi = shapley_values(v, 3);
  EXPECT_NEAR(phi[0], 1.5, 1e-12);
  EXPECT_NEAR(phi[1], 0.0, 1e-12);
  EXPECT_NEAR(phi[2], 1.5, 1e-12);
  EXPECT_NEAR(phi[0] + phi[1] + phi[2], v[7] - v[0], 1e-12);
}

TEST(Shapley, RefusesAWrongNumberOfValues) {
  EXPECT_EQ(testing::error_of([] {
              shapley_values({0, 1, 2}, 2);
            }),
            "shapley_values: 3 coalition values for 2 players (expected 2^2)");
}

TEST(GraftGroups, EveryDenseTensorHasItsGroupAndRoutersAreRefused) {
  EXPECT_EQ(graft_groups(), (std::vector<std::string>{"embedding", "attention", "norms", "ffn"}));
  EXPECT_EQ(graft_group("model.embed_tokens.weight"), 0);
  EXPECT_EQ(graft_group("lm_head.weight"), 0);
  EXPECT_EQ(graft_group("model.layers.3.self_attn.o_proj.weight"), 1);
  EXPECT_EQ(graft_group("model.layers.0.input_layernorm.weight"), 2);
  EXPECT_EQ(graft_group("model.norm.weight"), 2);
  EXPECT_EQ(graft_group("model.layers.1.mlp.down_proj.weight"), 3);
  EXPECT_EQ(testing::error_of([] { graft_group("model.layers.0.block_sparse_moe.gate.weight"); }),
            "parameter 'model.layers.0.block_sparse_moe.gate.weight' is a router: grafting takes "
            "dense checkpoints");
}

}  // namespace
}  // namespace btx
