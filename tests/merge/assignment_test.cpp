// The exact linear assignment (merge/assignment.h) on a hand-solved case, against every
// permutation of small random matrices, on a permuted identity it must undo, on ties and
// negative costs, and on bad input.
#include "btx/merge/assignment.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <numeric>

#include "test_util.h"

namespace btx {
namespace {

double total(const torch::Tensor& cost, const std::vector<int64_t>& a) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    s += cost[static_cast<int64_t>(i)][a[i]].item<double>();
  }
  return s;
}

bool is_permutation(std::vector<int64_t> a) {
  std::sort(a.begin(), a.end());
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != static_cast<int64_t>(i)) return false;
  }
  return true;
}

TEST(Assignment, HandSolvedCase) {
  // Rows are workers, columns jobs; the six permutations (column of rows 0, 1, 2) by hand:
  //   (0,1,2) 4+2+9=15  (0,2,1) 4+8+4=16  (1,0,2) 1+6+9=16
  //   (1,2,0) 1+8+2=11  (2,0,1) 3+6+4=13  (2,1,0) 3+2+2=7
  // The greedy choice (row 0 first, its cheapest column 1) gives at best 11; the optimum is 7.
  const auto cost = torch::tensor({{4.0, 1.0, 3.0}, {6.0, 2.0, 8.0}, {2.0, 4.0, 9.0}});
  EXPECT_EQ(min_cost_assignment(cost), (std::vector<int64_t>{2, 1, 0}));
  // Maximising a score is minimising its negative: the best total score is 8+4+4 = 16 (twice:
  // (0,2,1) and (1,0,2)); either is an optimum.
  const auto best = max_score_assignment(cost);
  EXPECT_EQ(total(cost, best), 16.0);
}

TEST(Assignment, EqualsTheBestOfEveryPermutation) {
  torch::manual_seed(7);
  for (int64_t n : {1, 2, 3, 5, 7}) {
    for (int trial = 0; trial < 5; ++trial) {
      const auto cost = torch::randn({n, n}, torch::kFloat64) * 10 - 3;  // negatives too
      std::vector<int64_t> perm(static_cast<size_t>(n));
      std::iota(perm.begin(), perm.end(), 0);
      double best = std::numeric_limits<double>::infinity();
      do {
        best = std::min(best, total(cost, perm));
      } while (std::next_permutation(perm.begin(), perm.end()));
      const auto got = min_cost_assignment(cost);
      ASSERT_TRUE(is_permutation(got)) << "n " << n;
      EXPECT_NEAR(total(cost, got), best, 1e-9) << "n " << n << " trial " << trial;
    }
  }
}

TEST(Assignment, UndoesAPermutationOfMatchingNeurons) {
  // Neuron activations of an anchor and of an expert whose neurons are the anchor's shuffled
  // (plus a little noise): matching by correlation finds the shuffle, on 64 neurons.
  torch::manual_seed(3);
  const int64_t n = 64;
  const auto anchor = torch::randn({500, n}, torch::kFloat64);
  const auto shuffle = torch::randperm(n, torch::kInt64);
  const auto expert =
      anchor.index_select(1, shuffle) + 0.05 * torch::randn({500, n}, torch::kFloat64);
  const auto score = anchor.t().mm(expert);  // (anchor neuron, expert neuron)
  const auto a = max_score_assignment(score);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(shuffle[a[i]].item<int64_t>(), i) << i;
}

TEST(Assignment, TiesAndBadInput) {
  // Every assignment of a constant matrix is optimal: any permutation will do.
  EXPECT_TRUE(is_permutation(min_cost_assignment(torch::ones({4, 4}))));
  EXPECT_NE(testing::error_of([] {
              min_cost_assignment(torch::ones({2, 3}));
            }).find("square cost matrix, got shape 2x3"),
            std::string::npos);
  EXPECT_NE(testing::error_of([] {
              min_cost_assignment(torch::ones({0, 0}));
            }).find("non-empty"),
            std::string::npos);
  auto nan = torch::ones({2, 2});
  nan[0][1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(testing::error_of([&] { min_cost_assignment(nan); }).find("not finite"),
            std::string::npos);
}

}  // namespace
}  // namespace btx
