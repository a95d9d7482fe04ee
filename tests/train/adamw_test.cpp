// AdamW against torch::optim::AdamW, and the learning-rate schedule by hand.
#include "btx/train/adamw.h"

#include <gtest/gtest.h>

namespace btx {
namespace {

TEST(LrSchedule, WarmupThenCosine) {
  // warmup 4 steps to 1.0, cosine to 0.1 at step 14
  EXPECT_DOUBLE_EQ(lr_at(0, 14, 4, 1.0, 0.1), 0.25);
  EXPECT_DOUBLE_EQ(lr_at(3, 14, 4, 1.0, 0.1), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(4, 14, 4, 1.0, 0.1), 1.0);
  EXPECT_NEAR(lr_at(9, 14, 4, 1.0, 0.1), 0.55, 1e-12);  // halfway: min + (max-min)/2
  EXPECT_NEAR(lr_at(14, 14, 4, 1.0, 0.1), 0.1, 1e-12);
  EXPECT_NEAR(lr_at(20, 14, 4, 1.0, 0.1), 0.1, 1e-12);  // stays at min past the end
  EXPECT_DOUBLE_EQ(lr_at(0, 10, 0, 2.0, 0.0), 2.0);     // no warmup
}

TEST(AdamW, MaskedElementsKeepTheirValueAndTheOthersUpdateAsWithoutAMask) {
  torch::manual_seed(1);
  auto w0 = torch::randn({3, 4});
  auto masked = w0.clone().requires_grad_(true), plain = w0.clone().requires_grad_(true);
  AdamW a({{"w", masked}}, AdamWOptions{0.9, 0.95, 1e-8, 0.1});
  AdamW b({{"w", plain}}, AdamWOptions{0.9, 0.95, 1e-8, 0.1});
  auto mask = torch::ones({3, 4});
  mask[0].zero_();  // row 0 frozen, as FlexOlmo's anchor router row
  a.set_update_mask("w", mask);
  const auto x = torch::randn({5, 4});
  for (int i = 0; i < 3; ++i) {
    a.zero_grad();
    b.zero_grad();
    x.mm(masked.t()).pow(2).sum().backward();
    x.mm(plain.t()).pow(2).sum().backward();
    masked.mutable_grad().mul_(mask);  // the trainer masks the gradient with a hook
    a.step(0.01);
    b.step(0.01);
  }
  EXPECT_TRUE(torch::equal(masked.detach()[0], w0[0]));  // no update, no weight decay
  EXPECT_TRUE(torch::equal(masked.detach().narrow(0, 1, 2), plain.detach().narrow(0, 1, 2)));
  EXPECT_FALSE(torch::equal(plain.detach()[0], w0[0]));
  EXPECT_THROW(a.set_update_mask("w", torch::ones({4, 3})), std::exception);
  EXPECT_THROW(a.set_update_mask("nope", mask), std::exception);
}

TEST(AdamW, MatchesTorchAdamW) {
  torch::manual_seed(0);
  auto w0 = torch::randn({3, 4});
  auto b0 = torch::randn({4});
  auto w1 = w0.clone().requires_grad_(true), b1 = b0.clone().requires_grad_(true);
  auto w2 = w0.clone().requires_grad_(true), b2 = b0.clone().requires_grad_(true);
  AdamW ours({{"w", w1}, {"b", b1}}, AdamWOptions{0.9, 0.95, 1e-8, 0.1});
  // torch's AdamW decays every parameter: give the bias its own group without decay.
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(
      std::vector<torch::Tensor>{w2},
      std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1)));
  groups.emplace_back(
      std::vector<torch::Tensor>{b2},
      std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.0)));
  torch::optim::AdamW theirs(groups, torch::optim::AdamWOptions(0.01));
  auto x = torch::randn({5, 3});
  for (int i = 0; i < 4; ++i) {
    ours.zero_grad();
    theirs.zero_grad();
    (x.matmul(w1) + b1).pow(2).sum().backward();
    (x.matmul(w2) + b2).pow(2).sum().backward();
    ours.step(0.01);
    theirs.step();
  }
  EXPECT_TRUE(torch::allclose(w1, w2, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(b1, b2, 1e-6, 1e-7));
  EXPECT_EQ(ours.steps(), 4);
  // On the CPU the fused kernel is not used: the per-tensor update ran (tests/gpu compares the
  // two on a GPU).
  EXPECT_FALSE(ours.last_step_fused());
}

TEST(AdamW, NoDecayOnVectors) {
  auto v = torch::ones({3}).requires_grad_(true);
  AdamW opt({{"v", v}}, AdamWOptions{0.9, 0.95, 1e-8, 0.5});
  v.mutable_grad() = torch::zeros({3});
  opt.step(1.0);
  EXPECT_TRUE(torch::equal(v, torch::ones({3})));  // zero gradient, no decay: unchanged
  auto m = torch::ones({2, 2}).requires_grad_(true);
  AdamW opt2({{"m", m}}, AdamWOptions{0.9, 0.95, 1e-8, 0.5});
  m.mutable_grad() = torch::zeros({2, 2});
  opt2.step(1.0);
  EXPECT_TRUE(torch::allclose(m, torch::full({2, 2}, 0.5)));  // decayed by lr * wd
}

TEST(AdamW, StateRoundTripAndShapeErrors) {
  auto w = torch::randn({2, 2}).requires_grad_(true);
  AdamW a({{"w", w}}, {});
  w.mutable_grad() = torch::ones({2, 2});
  a.step(0.1);
  auto st = a.state();
  ASSERT_EQ(st.size(), 2u);
  auto w2 = w.detach().clone().requires_grad_(true);
  AdamW b({{"w", w2}}, {});
  b.load_state(st, a.steps(), "test");
  EXPECT_TRUE(torch::equal(b.state()["w.exp_avg"], st["w.exp_avg"]));
  st["w.exp_avg"] = torch::zeros({3});
  EXPECT_THROW(b.load_state(st, 1, "test"), std::exception);
}

}  // namespace
}  // namespace btx
