// Greedy DPP MAP (merge/dpp.h) by hand and against the naive greedy that computes log det(L_Y)
// for every candidate: relevance first, then diversity (a duplicate of a picked item adds
// nothing), early stop when nothing adds volume.
#include "btx/merge/dpp.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "test_util.h"

namespace btx {
namespace {

TEST(GreedyDpp, OrthogonalItemsComeInOrderOfRelevance) {
  const auto f = torch::eye(3, torch::kFloat64);
  EXPECT_EQ(greedy_dpp_map(f, torch::tensor({1.0, 3.0, 2.0}), 3), (std::vector<int64_t>{1, 2, 0}));
  EXPECT_EQ(greedy_dpp_map(f, torch::tensor({1.0, 3.0, 2.0}), 2), (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(greedy_dpp_map(f, torch::tensor({1.0, 3.0, 2.0}), 0).empty());
}

TEST(GreedyDpp, ADuplicateAddsNothingAndSimilarItemsLoseToDiverseOnes) {
  // Items 0 and 1 are the same direction (relevance 3 and 2.9), item 2 orthogonal (1): after 0,
  // the duplicate adds no volume and item 2 is picked; then nothing is left to add.
  const auto f = torch::tensor({{1.0, 0.0}, {2.0, 0.0}, {0.0, 1.0}});
  EXPECT_EQ(greedy_dpp_map(f, torch::tensor({3.0, 2.9, 1.0}), 3), (std::vector<int64_t>{0, 2}));
  // Nearly parallel (cos 0.99): the gain of item 1 after 0 is 2.9² (1 - 0.99²) = 0.168 < 1.
  const double s = std::sqrt(1 - 0.99 * 0.99);
  const auto g = torch::tensor({{1.0, 0.0, 0.0}, {0.99, s, 0.0}, {0.0, 0.0, 1.0}});
  EXPECT_EQ(greedy_dpp_map(g, torch::tensor({3.0, 2.9, 1.0}), 2), (std::vector<int64_t>{0, 2}));
}

TEST(GreedyDpp, EqualsTheNaiveGreedyOnLogDeterminants) {
  torch::manual_seed(3);
  for (int trial = 0; trial < 5; ++trial) {
    const auto f = torch::randn({12, 5}, torch::kFloat64);
    const auto q = torch::rand({12}, torch::kFloat64) + 0.5;
    const auto u = f / f.norm(2, 1, true);
    const auto L = q.unsqueeze(1) * u.mm(u.t()) * q.unsqueeze(0);
    std::vector<int64_t> naive;
    for (int step = 0; step < 5; ++step) {
      int64_t best = -1;
      double best_logdet = -1e300;
      for (int64_t i = 0; i < 12; ++i) {
        if (std::find(naive.begin(), naive.end(), i) != naive.end()) continue;
        auto y = naive;
        y.push_back(i);
        const auto idx = torch::tensor(y);
        const double ld = torch::logdet(L.index_select(0, idx).index_select(1, idx)).item<double>();
        if (ld > best_logdet) best_logdet = ld, best = i;
      }
      naive.push_back(best);
    }
    EXPECT_EQ(greedy_dpp_map(f, q, 5), naive) << trial;
  }
}

TEST(GreedyDpp, LowQualityAloneNeverStopsTheChoice) {
  // Qualities 1, 1e-20 and 1e-40 on orthogonal items: each adds volume, however little.
  EXPECT_EQ(greedy_dpp_map(torch::eye(3, torch::kFloat64), torch::tensor({1e-20, 1.0, 1e-40}), 3),
            (std::vector<int64_t>{1, 0, 2}));
}

TEST(GreedyDpp, BadInputIsAClearError) {
  EXPECT_NE(testing::error_of([] {
              greedy_dpp_map(torch::eye(2), torch::tensor({1.0, 0.0}), 1);
            }).find("quality must be finite and > 0"),
            std::string::npos);
  EXPECT_NE(testing::error_of([] { greedy_dpp_map(torch::eye(2), torch::ones({3}), 1); }), "");
}

}  // namespace
}  // namespace btx
