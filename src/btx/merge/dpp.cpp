#include "btx/merge/dpp.h"

#include <cmath>

#include "btx/util/error.h"

namespace btx {

std::vector<int64_t> greedy_dpp_map(const torch::Tensor& features, const torch::Tensor& quality,
                                    int64_t k, double eps) {
  BTX_CHECK(features.dim() == 2 && quality.dim() == 1 && quality.size(0) == features.size(0),
            "DPP selection: features (N, D) and quality (N) expected");
  BTX_CHECK(k >= 0, "DPP selection: k must be >= 0, got {}", k);
  const int64_t N = features.size(0);
  const auto q = quality.to(torch::kFloat64).contiguous();
  BTX_CHECK(N == 0 || (q.isfinite().all().item<bool>() && q.gt(0).all().item<bool>()),
            "DPP selection: every quality must be finite and > 0");
  auto f = features.to(torch::kFloat64);
  f = f / f.norm(2, 1, /*keepdim=*/true).clamp_min(1e-300);
  // d2[i]: the squared volume item i would add (its residual after the picked items' span);
  // c (k, N): row t holds every item's coefficient on the t-th picked item's Cholesky direction.
  const auto diag = (q * q * f.pow(2).sum(1)).clamp_min(1e-300);  // L_ii
  auto d2 = diag.clone();
  std::vector<torch::Tensor> c;
  std::vector<int64_t> picked;
  auto taken = torch::zeros({N}, torch::kBool);
  while (static_cast<int64_t>(picked.size()) < std::min(k, N)) {
    // An item whose residual is a vanishing share of its own norm lies in the span of those
    // picked: it adds no volume, whatever its quality (a relative test, so that a low quality
    // alone never reads as "in the span").
    const auto spent = taken.logical_or(d2.div(diag).lt(eps));
    if (spent.all().item<bool>()) break;
    const auto gains = d2.masked_fill(spent, -1.0);
    const int64_t j = gains.argmax().item<int64_t>();
    const double dj2 = gains[j].item<double>();
    picked.push_back(j);
    taken[j] = true;
    // L_ji for every i, minus what the earlier directions already explain, over d_j.
    auto e = q[j] * q * f.mv(f[j]);
    for (const auto& row : c) e = e - row[j] * row;
    e = e / std::sqrt(dj2);
    c.push_back(e);
    d2 = d2 - e.pow(2);
  }
  return picked;
}

}  // namespace btx
