// The arithmetic of "why merging fails", by hand: the divergence of one cell from a Gram matrix
// of updates, the layer of a parameter, the two heights of a loss barrier, and the entropy
// binning of per-token gains.
#include <gtest/gtest.h>

#include <cmath>

#include "btx/analysis/barrier.h"
#include "btx/analysis/divergence.h"
#include "btx/analysis/token_gain.h"
#include "test_util.h"

namespace btx {
namespace {

TEST(Divergence, OrthogonalUpdatesByHand) {
  // ‖θ_seed‖ = 2; two updates of norm 1 at right angles: each expert is 0.5 from the seed, the
  // two sqrt(2)/2 apart, and their average moves by ‖(Δa + Δb)/2‖ = sqrt(2)/2, 0.3536 relative.
  const auto c = divergence_cell(4.0, {{1.0, 0.0}, {0.0, 1.0}});
  EXPECT_DOUBLE_EQ(c["seed_norm"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(c["from_seed"][0].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(c["from_seed"][1].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(c["between"][0][1].get<double>(), std::sqrt(2.0) / 2);
  EXPECT_DOUBLE_EQ(c["between"][0][0].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(c["cosine"][0][1].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(c["cosine"][1][1].get<double>(), 1.0);
  EXPECT_NEAR(c["mean_update"].get<double>(), std::sqrt(2.0) / 4, 1e-15);
  EXPECT_DOUBLE_EQ(c["mean_from_seed"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(c["mean_between"].get<double>(), std::sqrt(2.0) / 2);
  EXPECT_DOUBLE_EQ(c["mean_cosine"].get<double>(), 0.0);
}

TEST(Divergence, IdenticalExpertsAreZeroApartAndTheAverageIsEachOfThem) {
  // Three equal updates of squared norm 9 on a seed of squared norm 9.
  const std::vector<std::vector<double>> gram(3, std::vector<double>(3, 9.0));
  const auto c = divergence_cell(9.0, gram);
  for (int a = 0; a < 3; ++a) {
    EXPECT_DOUBLE_EQ(c["from_seed"][a].get<double>(), 1.0);
    for (int b = 0; b < 3; ++b) {
      EXPECT_DOUBLE_EQ(c["between"][a][b].get<double>(), 0.0);
      EXPECT_DOUBLE_EQ(c["cosine"][a][b].get<double>(), 1.0);
    }
  }
  EXPECT_DOUBLE_EQ(c["mean_update"].get<double>(), 1.0);
  // Experts that did not move: 0 from the seed, no direction (cosine 0 by convention).
  const auto still = divergence_cell(1.0, {{0.0, 0.0}, {0.0, 0.0}});
  EXPECT_DOUBLE_EQ(still["from_seed"][0].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(still["between"][0][1].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(still["cosine"][0][1].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(still["mean_update"].get<double>(), 0.0);
  // One expert: no pairs.
  EXPECT_TRUE(divergence_cell(1.0, {{1.0}})["mean_between"].is_null());
  EXPECT_EQ(testing::error_of([] { divergence_cell(0.0, {{1.0}}); }),
            "divergence_cell: 1 experts and a seed of squared norm 0 (expected >= 1 and > 0)");
}

TEST(Divergence, ParamLayer) {
  EXPECT_EQ(param_layer("model.layers.0.self_attn.q_proj.weight"), 0);
  EXPECT_EQ(param_layer("model.layers.12.mlp.down_proj.weight"), 12);
  EXPECT_EQ(param_layer("model.embed_tokens.weight"), -1);
  EXPECT_EQ(param_layer("model.norm.weight"), -1);
  EXPECT_EQ(param_layer("lm_head.weight"), -1);
  EXPECT_EQ(testing::error_of([] { param_layer("model.layers.x.mlp.weight"); }),
            "parameter 'model.layers.x.mlp.weight': no layer number after 'model.layers.'");
}

TEST(Barrier, HeightsByHand) {
  // A bump in the middle: the highest point 3 against ends 1 and 2 (mean 1.5): 1.5 high; above
  // the chord (1.5 at α = 1/2): 1.5.
  EXPECT_DOUBLE_EQ(barrier_height({1.0, 3.0, 2.0}), 1.5);
  EXPECT_DOUBLE_EQ(barrier_above_chord({1.0, 3.0, 2.0}), 1.5);
  // A straight line from 1 to 2: no barrier above the chord, but the height counts the higher
  // end (2 - 1.5), as Frankle et al. define it.
  EXPECT_DOUBLE_EQ(barrier_height({1.0, 1.25, 1.5, 1.75, 2.0}), 0.5);
  EXPECT_DOUBLE_EQ(barrier_above_chord({1.0, 1.25, 1.5, 1.75, 2.0}), 0.0);
  // A path that bends down (a convex valley): no barrier either way beyond the ends.
  EXPECT_DOUBLE_EQ(barrier_above_chord({2.0, 1.0, 2.0}), 0.0);
  EXPECT_DOUBLE_EQ(barrier_height({2.0, 1.0, 2.0}), 0.0);
  // A model with itself: flat, 0.
  EXPECT_DOUBLE_EQ(barrier_height({0.7, 0.7, 0.7}), 0.0);
  EXPECT_DOUBLE_EQ(barrier_above_chord({0.7, 0.7, 0.7}), 0.0);
  // Above the chord at α = 1/4: 1.0 + 1 - (0.75 * 1 + 0.25 * 3) = 0.5.
  EXPECT_DOUBLE_EQ(barrier_above_chord({1.0, 2.0, 2.0, 2.5, 3.0}), 0.5);
  EXPECT_EQ(testing::error_of([] { barrier_height({1.0}); }),
            "a loss barrier needs at least 2 points, got 1");
}

TEST(TokenGain, EntropyBinsByRank) {
  const auto h = torch::tensor({0.5, 3.0, 1.0, 2.0, 0.1}, torch::kFloat64);
  EXPECT_TRUE(torch::equal(entropy_bins(h, 5), torch::tensor({1, 4, 2, 3, 0}, torch::kInt64)));
  // Two bins of 5 tokens: ranks 0-2 -> bin 0 (floor(r * 2 / 5)), ranks 3-4 -> bin 1.
  EXPECT_TRUE(torch::equal(entropy_bins(h, 2), torch::tensor({0, 1, 0, 1, 0}, torch::kInt64)));
  // Ties go by position.
  const auto flat = torch::full({4}, 1.0, torch::kFloat64);
  EXPECT_TRUE(torch::equal(entropy_bins(flat, 2), torch::tensor({0, 0, 1, 1}, torch::kInt64)));
  EXPECT_EQ(testing::error_of([] { entropy_bins(torch::zeros({0}), 2); }),
            "entropy_bins: 0 values in 2 bins (expected a non-empty 1-D tensor and bins >= 1)");
}

TEST(TokenGain, SharesOfAFixedToyDistribution) {
  // Ten tokens with entropies 1..10 (given shuffled) and a gain only on the two most uncertain:
  // 1 and 3 nats. Deciles hold one token each; the top 20% carry the whole gain.
  const auto h =
      torch::tensor({10.0, 1.0, 9.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}, torch::kFloat64);
  const auto g = torch::tensor({3.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0}, torch::kFloat64);
  const auto r = binned_gain(h, g, 10, 0.2);
  EXPECT_EQ(r["tokens"], 10);
  EXPECT_DOUBLE_EQ(r["gain"].get<double>(), 0.4);
  EXPECT_DOUBLE_EQ(r["total"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(r["top_share"].get<double>(), 1.0);
  ASSERT_EQ(r["bins"].size(), 10u);
  EXPECT_DOUBLE_EQ(r["bins"][8]["share"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(r["bins"][9]["share"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(r["bins"][9]["entropy_lo"].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(r["bins"][0]["entropy_mean"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(r["bins"][0]["share"].get<double>(), 0.0);

  // Five bins of two tokens; a uniform gain of 0.5: each bin holds a fifth, the top 20% too.
  const auto u = binned_gain(h, torch::full({10}, 0.5, torch::kFloat64), 5, 0.2);
  for (const auto& b : u["bins"]) {
    EXPECT_EQ(b["tokens"], 2);
    EXPECT_DOUBLE_EQ(b["share"].get<double>(), 0.2);
    EXPECT_DOUBLE_EQ(b["gain_mean"].get<double>(), 0.5);
  }
  EXPECT_DOUBLE_EQ(u["top_share"].get<double>(), 0.2);
  EXPECT_DOUBLE_EQ(u["bins"][4]["entropy_mean"].get<double>(), 9.5);

  // A loss on the low-entropy tokens and a gain on the others: shares keep their signs; no
  // total, no shares.
  const auto mixed = binned_gain(torch::tensor({1.0, 2.0}, torch::kFloat64),
                                 torch::tensor({-1.0, 3.0}, torch::kFloat64), 2, 0.5);
  EXPECT_DOUBLE_EQ(mixed["bins"][0]["share"].get<double>(), -0.5);
  EXPECT_DOUBLE_EQ(mixed["top_share"].get<double>(), 1.5);
  const auto none = binned_gain(torch::tensor({1.0, 2.0}, torch::kFloat64),
                                torch::tensor({-1.0, 1.0}, torch::kFloat64), 2, 0.5);
  EXPECT_TRUE(none["top_share"].is_null());
  EXPECT_TRUE(none["bins"][0]["share"].is_null());
}

TEST(TokenGain, BinnedMean) {
  const auto bin = torch::tensor({0, 1, 0, 1, 2}, torch::kInt64);
  const auto v = torch::tensor({1.0, 2.0, 3.0, 6.0, 5.0}, torch::kFloat64);
  EXPECT_EQ(binned_mean(bin, v, 4), (nlohmann::json{2.0, 4.0, 5.0, nullptr}));
}

}  // namespace
}  // namespace btx
