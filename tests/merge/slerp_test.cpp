// Spherical interpolation (merge/slerp.h) against hand-computed cases: orthogonal unit vectors
// meet at 45 degrees with unit norm (their average has norm 0.707), the ends are the inputs,
// parallel tensors interpolate on the line, equal-norm inputs keep their norm, and several
// tensors fuse to the direction of their unit directions' sum, in any order.
#include "btx/merge/slerp.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "test_util.h"

namespace btx {
namespace {

TEST(Slerp, HandComputedCases) {
  const auto a = torch::tensor({1.0, 0.0}, torch::kFloat64);
  const auto b = torch::tensor({0.0, 1.0}, torch::kFloat64);
  const double h = std::sqrt(0.5);
  EXPECT_TRUE(torch::allclose(slerp(a, b, 0.5), torch::tensor({h, h}, torch::kFloat64)));
  EXPECT_NEAR(((a + b) / 2).norm().item<double>(), h, 1e-12);  // what averaging loses
  // 30 degrees of the 90: (cos 30°, sin 30°).
  EXPECT_TRUE(torch::allclose(slerp(a, b, 1.0 / 3),
                              torch::tensor({std::sqrt(3.0) / 2, 0.5}, torch::kFloat64)));
  EXPECT_TRUE(torch::equal(slerp(a, b, 0.0), a));
  EXPECT_TRUE(torch::allclose(slerp(a, b, 1.0), b));
  // Parallel: the line (2a and 4a meet at 3a).
  EXPECT_TRUE(torch::allclose(slerp(2 * a, 4 * a, 0.5), 3 * a));
  // Matrices flatten; equal norms stay equal.
  torch::manual_seed(1);
  auto x = torch::randn({4, 6}), y = torch::randn({4, 6});
  y = y * (x.norm() / y.norm());
  const auto m = slerp(x, y, 0.3);
  EXPECT_EQ(m.sizes(), x.sizes());
  EXPECT_EQ(m.scalar_type(), torch::kFloat);
  EXPECT_NEAR(m.norm().item<double>(), x.norm().item<double>(), 1e-4);
}

TEST(Slerp, SeveralFuseWithEqualWeightsInNoOrder) {
  const auto a = torch::tensor({1.0, 0.0, 0.0}, torch::kFloat64);
  const auto b = torch::tensor({0.0, 1.0, 0.0}, torch::kFloat64);
  const auto c = torch::tensor({0.0, 0.0, 1.0}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(slerp_all({a, b}), slerp(a, b, 0.5)));
  // Three orthogonal unit vectors: the unit vector at equal angles from them, in any order.
  const double r = 1 / std::sqrt(3.0);
  EXPECT_TRUE(torch::allclose(slerp_all({a, b, c}), torch::tensor({r, r, r}, torch::kFloat64)));
  EXPECT_TRUE(torch::allclose(slerp_all({c, a, b}), slerp_all({a, b, c})));
  // Norms 1 and 3 in one direction: that direction, norm 2.
  EXPECT_TRUE(torch::allclose(slerp_all({a, 3 * a}), 2 * a));
  // Opposite directions cancel: the plain average.
  EXPECT_TRUE(torch::allclose(slerp_all({a, -a}), torch::zeros({3}, torch::kFloat64)));
}

TEST(Slerp, BadInputIsAnError) {
  EXPECT_NE(testing::error_of([] {
              slerp(torch::ones({2}), torch::ones({3}), 0.5);
            }).find("shapes 2 and 3 differ"),
            std::string::npos);
  EXPECT_NE(testing::error_of([] {
              slerp(torch::ones({2}), torch::ones({2}), 1.5);
            }).find("not in [0, 1]"),
            std::string::npos);
  EXPECT_NE(testing::error_of([] { slerp_all({}); }).find("no tensors"), std::string::npos);
}

}  // namespace
}  // namespace btx
