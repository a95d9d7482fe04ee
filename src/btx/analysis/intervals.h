// How sure a row of the results table is, without training again: a bootstrap over the test
// windows each row was scored on (`btx eval` records every window's mean loss per domain). Every
// row of a run is scored on the same windows (the same test split, window length and novel
// text), so one set of resamples serves them all and two rows compared on it are *paired*: the
// interval of their difference leaves out the spread that both share (which windows happen to be
// hard), which is most of it.
//
// Resampling is stratified by domain, as the table's mean is: in each resample every domain draws
// as many windows as it has, with replacement, and the statistic is the table's mean perplexity,
// exp(mean over domains of the domain's mean window loss). The interval is the 2.5th and 97.5th
// percentile of 1,000 resamples (the percentile bootstrap), drawn from a fixed seed, so the same
// evaluations give the same intervals byte for byte. What it measures: the uncertainty from
// which test windows were drawn. Not what training would give with another seed (that is
// [study] seeds).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace btx {

// One row's window losses: [domain][window], in the table's domain order.
using WindowLosses = std::vector<std::vector<double>>;

struct Interval {
  double lo = 0, hi = 0;
};

// A paired comparison of row b against row a: the relative difference of their mean
// perplexities, b / a - 1 (negative: b is better), on all windows, and its 95% interval.
struct PairedDifference {
  double estimate = 0;
  Interval ci;
  bool excludes_zero() const { return ci.lo > 0 || ci.hi < 0; }
};

inline constexpr int kBootstrapResamples = 1000;

class WindowBootstrap {
 public:
  // Resamples for domains of `counts` windows each (each count >= 1).
  explicit WindowBootstrap(std::vector<int64_t> counts, int resamples = kBootstrapResamples,
                           uint64_t seed = 0);
  // The windows per domain of a row's losses.
  static std::vector<int64_t> counts_of(const WindowLosses& w);

  // exp(mean over domains of mean window loss): the table's mean perplexity on all windows.
  static double mean_ppl(const WindowLosses& w);
  // Its 95% interval; nullopt when w's windows per domain are not the bootstrap's.
  std::optional<Interval> mean_ppl_interval(const WindowLosses& w) const;
  // b against a on the same resamples; nullopt when either does not match the bootstrap.
  std::optional<PairedDifference> relative_difference(const WindowLosses& a,
                                                      const WindowLosses& b) const;

 private:
  // The resampled mean perplexity of w in every resample.
  std::vector<double> resampled(const WindowLosses& w) const;
  bool matches(const WindowLosses& w) const;

  std::vector<int64_t> counts_;
  int resamples_;
  // draws_[r][d]: the windows of domain d drawn in resample r.
  std::vector<std::vector<std::vector<int32_t>>> draws_;
};

// The q-quantile (0..1) of values, linear between order statistics (numpy's default).
double quantile(std::vector<double> values, double q);

}  // namespace btx
