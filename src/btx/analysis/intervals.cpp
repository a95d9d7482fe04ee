#include "btx/analysis/intervals.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "btx/util/error.h"

namespace btx {

WindowBootstrap::WindowBootstrap(std::vector<int64_t> counts, int resamples, uint64_t seed)
    : counts_(std::move(counts)), resamples_(resamples) {
  BTX_CHECK(resamples_ >= 1, "bootstrap: {} resamples (expected at least 1)", resamples_);
  for (const int64_t n : counts_) {
    BTX_CHECK(n >= 1, "bootstrap: a domain with {} windows (expected at least 1)", n);
  }
  // One generator, drawn in a fixed order: the same counts and seed give the same draws.
  std::mt19937_64 rng(seed);
  draws_.resize(static_cast<size_t>(resamples_));
  for (auto& r : draws_) {
    r.resize(counts_.size());
    for (size_t d = 0; d < counts_.size(); ++d) {
      std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(counts_[d] - 1));
      r[d].resize(static_cast<size_t>(counts_[d]));
      for (auto& i : r[d]) i = pick(rng);
    }
  }
}

std::vector<int64_t> WindowBootstrap::counts_of(const WindowLosses& w) {
  std::vector<int64_t> out;
  for (const auto& d : w) out.push_back(static_cast<int64_t>(d.size()));
  return out;
}

double WindowBootstrap::mean_ppl(const WindowLosses& w) {
  BTX_CHECK(!w.empty(), "bootstrap: no domains");
  double sum = 0;
  for (const auto& d : w) {
    BTX_CHECK(!d.empty(), "bootstrap: a domain without windows");
    double s = 0;
    for (const double l : d) s += l;
    sum += s / static_cast<double>(d.size());
  }
  return std::exp(sum / static_cast<double>(w.size()));
}

bool WindowBootstrap::matches(const WindowLosses& w) const {
  return counts_of(w) == counts_;
}

std::vector<double> WindowBootstrap::resampled(const WindowLosses& w) const {
  std::vector<double> out;
  out.reserve(draws_.size());
  for (const auto& r : draws_) {
    double sum = 0;
    for (size_t d = 0; d < w.size(); ++d) {
      double s = 0;
      for (const int32_t i : r[d]) s += w[d][static_cast<size_t>(i)];
      sum += s / static_cast<double>(r[d].size());
    }
    out.push_back(std::exp(sum / static_cast<double>(w.size())));
  }
  return out;
}

std::optional<Interval> WindowBootstrap::mean_ppl_interval(const WindowLosses& w) const {
  if (!matches(w)) return std::nullopt;
  const auto values = resampled(w);
  return Interval{quantile(values, 0.025), quantile(values, 0.975)};
}

std::optional<PairedDifference> WindowBootstrap::relative_difference(const WindowLosses& a,
                                                                     const WindowLosses& b) const {
  if (!matches(a) || !matches(b)) return std::nullopt;
  const auto ra = resampled(a), rb = resampled(b);
  std::vector<double> diff(ra.size());
  for (size_t i = 0; i < ra.size(); ++i) diff[i] = rb[i] / ra[i] - 1.0;
  PairedDifference p;
  p.estimate = mean_ppl(b) / mean_ppl(a) - 1.0;
  p.ci = {quantile(diff, 0.025), quantile(diff, 0.975)};
  return p;
}

double quantile(std::vector<double> values, double q) {
  BTX_CHECK(!values.empty(), "quantile of no values");
  BTX_CHECK(q >= 0 && q <= 1, "quantile {} (expected 0..1)", q);
  std::sort(values.begin(), values.end());
  const double pos = q * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (pos - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

}  // namespace btx
