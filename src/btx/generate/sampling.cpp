#include "btx/generate/sampling.h"

#include <algorithm>

#include "btx/util/error.h"

namespace btx {

void validate_sampling(const SamplingOptions& o) {
  BTX_CHECK(o.temperature >= 0, "temperature must be >= 0, got {}", o.temperature);
  BTX_CHECK(o.top_k >= 0, "top_k must be >= 0, got {}", o.top_k);
  BTX_CHECK(o.top_p > 0 && o.top_p <= 1, "top_p must be in (0, 1], got {}", o.top_p);
}

int64_t choose_token(const torch::Tensor& logits, const SamplingOptions& o, double u) {
  auto l = logits.to(torch::kFloat64).reshape({-1});
  if (o.temperature == 0) return l.argmax().item<int64_t>();
  auto probs = torch::softmax(l / o.temperature, 0);
  auto [sorted, order] = probs.sort(/*dim=*/0, /*descending=*/true);
  int64_t keep = sorted.size(0);
  if (o.top_k > 0) keep = std::min(keep, o.top_k);
  if (o.top_p < 1) {
    // The smallest prefix whose mass reaches top_p (at least one token).
    auto mass = sorted.cumsum(0);
    const int64_t reach = (mass < o.top_p).sum().item<int64_t>() + 1;
    keep = std::min(keep, reach);
  }
  auto kept = sorted.narrow(0, 0, keep);
  auto cdf = kept.cumsum(0) / kept.sum();
  int64_t i = (cdf <= u).sum().item<int64_t>();
  i = std::min(i, keep - 1);
  return order[i].item<int64_t>();
}

}  // namespace btx
