// The results' bootstrap intervals (analysis/intervals.h): quantiles and the table's mean by hand,
// intervals that collapse where nothing varies, the same draws every time, an interval of the
// width the normal theory gives, and pairing: a constant difference between two rows is exact,
// and a small difference under a large shared spread is resolved only when paired.
#include "btx/analysis/intervals.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace btx {
namespace {

TEST(Quantile, LinearBetweenOrderStatistics) {
  EXPECT_DOUBLE_EQ(quantile({4, 1, 3, 2}, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(quantile({4, 1, 3, 2}, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(quantile({4, 1, 3, 2}, 1.0), 4.0);
  EXPECT_DOUBLE_EQ(quantile({4, 1, 3, 2}, 0.025), 1.075);  // position 0.075
  EXPECT_DOUBLE_EQ(quantile({7}, 0.3), 7.0);
}

TEST(WindowBootstrap, MeanIsExpOfTheMeanOverDomainsOfEachDomainsMean) {
  // Domain means 2 and 5 (one domain of two windows, one of three): exp(3.5), not exp of the
  // mean over all five windows (3.8).
  const WindowLosses w = {{1.0, 3.0}, {4.0, 5.0, 6.0}};
  EXPECT_DOUBLE_EQ(WindowBootstrap::mean_ppl(w), std::exp(3.5));
  EXPECT_EQ(WindowBootstrap::counts_of(w), (std::vector<int64_t>{2, 3}));
}

TEST(WindowBootstrap, NothingVariesNothingUncertain) {
  const WindowLosses w = {{2.0, 2.0, 2.0}, {3.0, 3.0}};
  const WindowBootstrap boot({3, 2});
  const auto ci = boot.mean_ppl_interval(w);
  ASSERT_TRUE(ci);
  EXPECT_NEAR(ci->lo, std::exp(2.5), 1e-9);
  EXPECT_NEAR(ci->hi, std::exp(2.5), 1e-9);
  // Windows per domain other than the bootstrap's: no interval.
  EXPECT_FALSE(boot.mean_ppl_interval({{2.0, 2.0}, {3.0, 3.0}}));
  EXPECT_FALSE(boot.mean_ppl_interval({{2.0, 2.0, 2.0}}));
}

WindowLosses normal_windows(int64_t n, double mean, double sd, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(mean, sd);
  std::vector<double> w(static_cast<size_t>(n));
  for (auto& x : w) x = d(rng);
  return {w};
}

TEST(WindowBootstrap, SameDrawsEveryTimeAndTheWidthNormalTheoryGives) {
  // 400 windows of loss ~ N(4, 0.5): the mean loss has standard error 0.025, so the 95% interval
  // of exp(mean) is about exp(4) x 2 x 1.96 x 0.025 = 5.35 wide, around exp(mean).
  const auto w = normal_windows(400, 4.0, 0.5, 7);
  const WindowBootstrap a({400}), b({400});
  const auto ci = a.mean_ppl_interval(w);
  ASSERT_TRUE(ci);
  const auto again = b.mean_ppl_interval(w);
  EXPECT_EQ(ci->lo, again->lo);
  EXPECT_EQ(ci->hi, again->hi);
  const double m = WindowBootstrap::mean_ppl(w);
  EXPECT_LT(ci->lo, m);
  EXPECT_GT(ci->hi, m);
  EXPECT_NEAR(ci->hi - ci->lo, std::exp(4.0) * 2 * 1.96 * 0.025, 1.0);
  // Another seed draws other resamples: close, not equal.
  const auto other = WindowBootstrap({400}, kBootstrapResamples, 99).mean_ppl_interval(w);
  EXPECT_NE(other->lo, ci->lo);
  EXPECT_NEAR(other->lo, ci->lo, 0.5);
}

TEST(WindowBootstrap, AConstantDifferencePerWindowIsExact) {
  const auto a = normal_windows(100, 4.0, 0.5, 1);
  WindowLosses b = a;
  for (auto& x : b[0]) x += 0.1;  // b is exp(0.1) - 1 = 10.5% worse on every resample
  const WindowBootstrap boot({100});
  const auto d = boot.relative_difference(a, b);
  ASSERT_TRUE(d);
  EXPECT_NEAR(d->estimate, std::exp(0.1) - 1, 1e-12);
  EXPECT_NEAR(d->ci.lo, std::exp(0.1) - 1, 1e-12);
  EXPECT_NEAR(d->ci.hi, std::exp(0.1) - 1, 1e-12);
  EXPECT_TRUE(d->excludes_zero());
  const auto same = boot.relative_difference(a, a);
  EXPECT_DOUBLE_EQ(same->estimate, 0.0);
  EXPECT_FALSE(same->excludes_zero());
  EXPECT_FALSE(boot.relative_difference(a, {{1.0}}));
}

TEST(WindowBootstrap, PairingResolvesASmallDifferenceUnderASharedSpread) {
  // Window difficulty varies a lot (sd 1) and is the same for both rows; b is 0.02 nats better
  // up to a little noise of its own. Alone, the rows' intervals overlap; paired, b is better.
  std::mt19937_64 rng(5);
  std::normal_distribution<double> hard(4.0, 1.0), own(0.0, 0.01);
  WindowLosses a(1), b(1);
  for (int i = 0; i < 200; ++i) {
    const double h = hard(rng);
    a[0].push_back(h + own(rng));
    b[0].push_back(h - 0.02 + own(rng));
  }
  const WindowBootstrap boot({200});
  const auto ca = boot.mean_ppl_interval(a), cb = boot.mean_ppl_interval(b);
  EXPECT_LT(ca->lo, cb->hi);  // the separate intervals overlap
  const auto d = boot.relative_difference(a, b);
  EXPECT_NEAR(d->estimate, std::exp(-0.02) - 1, 0.003);
  EXPECT_LT(d->ci.hi, 0.0);
  EXPECT_TRUE(d->excludes_zero());
}

}  // namespace
}  // namespace btx
