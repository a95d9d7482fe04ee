// The ridge router init (merge/moe_build.h, DUME): W = (XᵀX + λ'I)⁻¹XᵀY from per-slot
// statistics, checked on a hand-computed case, against the normal equations on random data,
// and on separable hidden states that it must route to their own expert.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "btx/merge/moe_build.h"
#include "test_util.h"

namespace btx {
namespace {

using testing::error_of;

// X_j's statistics: its Gram matrix and the sum of its rows.
std::pair<torch::Tensor, torch::Tensor> stats(const torch::Tensor& x) {
  auto x64 = x.to(torch::kFloat64);
  return {x64.t().mm(x64), x64.sum(0)};
}

TEST(RidgeRouter, HandComputedDiagonalCase) {
  // Slot 0: the token (1, 0) twice; slot 1: (0, 1) once. XᵀX = diag(2, 1), XᵀY = diag(2, 1),
  // mean eigenvalue 1.5. With lambda 1/3, λ' = 0.5: W = diag(2 / 2.5, 1 / 1.5).
  auto [g0, s0] = stats(torch::tensor({{1.0, 0.0}, {1.0, 0.0}}));
  auto [g1, s1] = stats(torch::tensor({{0.0, 1.0}}));
  const auto w = ridge_router_weights({g0, g1}, {s0, s1}, 1.0 / 3.0);
  ASSERT_EQ(w.sizes(), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(w.scalar_type(), torch::kFloat32);
  EXPECT_NEAR(w[0][0].item<double>(), 0.8, 1e-6);
  EXPECT_NEAR(w[1][1].item<double>(), 2.0 / 3.0, 1e-6);
  EXPECT_NEAR(w[0][1].item<double>(), 0.0, 1e-7);
  EXPECT_NEAR(w[1][0].item<double>(), 0.0, 1e-7);
  // lambda 0: plain least squares, here the identity.
  EXPECT_TRUE(
      torch::allclose(ridge_router_weights({g0, g1}, {s0, s1}, 0.0), torch::eye(2), 1e-6, 1e-6));
}

TEST(RidgeRouter, SolvesTheNormalEquations) {
  torch::manual_seed(3);
  const int64_t C = 6;
  std::vector<torch::Tensor> xs = {torch::randn({40, C}), torch::randn({25, C}) + 0.5,
                                   torch::randn({30, C}) - 0.25};
  std::vector<torch::Tensor> grams, sums, labels;
  for (size_t j = 0; j < xs.size(); ++j) {
    auto [g, s] = stats(xs[j]);
    grams.push_back(g);
    sums.push_back(s);
    labels.push_back(torch::zeros({xs[j].size(0), 3}, torch::kFloat64)
                         .index_fill_(1, torch::tensor({static_cast<int64_t>(j)}), 1.0));
  }
  const double lambda = 0.05;
  const auto w = ridge_router_weights(grams, sums, lambda).to(torch::kFloat64).t();  // (C, E)
  auto x = torch::cat(xs).to(torch::kFloat64);
  auto y = torch::cat(labels);
  const double ridge = lambda * x.t().mm(x).diagonal().sum().item<double>() / C;
  // The gradient of ‖XW − Y‖² + λ'‖W‖² vanishes at the solution.
  auto grad = x.t().mm(x.mm(w) - y) + ridge * w;
  EXPECT_LT(grad.abs().max().item<double>(), 1e-3);
}

TEST(RidgeRouter, RoutesSeparableHiddenStatesToTheirOwnExpert) {
  torch::manual_seed(5);
  const int64_t C = 8, E = 3;
  auto centres = torch::randn({E, C}) * 3;
  std::vector<torch::Tensor> grams, sums, xs;
  for (int64_t j = 0; j < E; ++j) {
    xs.push_back(centres[j] + 0.3 * torch::randn({50, C}));
    auto [g, s] = stats(xs.back());
    grams.push_back(g);
    sums.push_back(s);
  }
  const auto w = ridge_router_weights(grams, sums, 0.01);
  for (int64_t j = 0; j < E; ++j) {
    const auto chosen = xs[j].mm(w.t()).argmax(1);
    EXPECT_TRUE(chosen.eq(j).all().item<bool>()) << "slot " << j;
  }
}

TEST(RidgeRouter, RefusesMismatchedOrEmptyStatistics) {
  auto [g, s] = stats(torch::ones({2, 2}));
  EXPECT_EQ(error_of([&] {
              ridge_router_weights({g}, {s, s}, 0.1);
            }),
            "ridge router: 1 Gram matrices for 2 slots");
  EXPECT_EQ(error_of([&] { ridge_router_weights({g}, {s}, -1); }),
            "ridge router: lambda -1 is negative");
  auto z = torch::zeros({2, 2}, torch::kFloat64);
  EXPECT_EQ(error_of([&] { ridge_router_weights({z}, {torch::zeros({2})}, 0.1); }),
            "ridge router: the hidden states are all zero");
}

}  // namespace
}  // namespace btx
