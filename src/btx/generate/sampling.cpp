#include "btx/generate/sampling.h"

#include <algorithm>

#include "btx/util/error.h"

namespace btx {

void validate_sampling(const SamplingOptions& o) {
  BTX_CHECK(o.temperature >= 0, "temperature must be >= 0, got {}", o.temperature);
  BTX_CHECK(o.top_k >= 0, "top_k must be >= 0, got {}", o.top_k);
  BTX_CHECK(o.top_p > 0 && o.top_p <= 1, "top_p must be in (0, 1], got {}", o.top_p);
  BTX_CHECK(o.presence_penalty >= -2 && o.presence_penalty <= 2,
            "presence_penalty must be in [-2, 2], got {}", o.presence_penalty);
  BTX_CHECK(o.frequency_penalty >= -2 && o.frequency_penalty <= 2,
            "frequency_penalty must be in [-2, 2], got {}", o.frequency_penalty);
  for (const auto& [token, bias] : o.logit_bias) {
    BTX_CHECK(bias >= -100 && bias <= 100, "logit_bias of token {} must be in [-100, 100], got {}",
              token, bias);
  }
}

torch::Tensor adjusted_logits(const torch::Tensor& logits, const torch::Tensor& counts,
                              const SamplingOptions& o) {
  if (!o.adjusts_logits()) return logits;
  auto l = logits.to(torch::kFloat64).reshape({-1});
  const int64_t v = l.size(0);
  if (!o.logit_bias.empty()) {
    std::vector<int64_t> ids;
    std::vector<double> biases;
    for (const auto& [token, bias] : o.logit_bias) {
      BTX_CHECK(token >= 0 && token < v,
                "logit_bias names token {}, outside the vocabulary [0, {})", token, v);
      ids.push_back(token);
      biases.push_back(bias);
    }
    l = l.index_add(0, torch::tensor(ids, torch::kInt64).to(l.device()),
                    torch::tensor(biases, torch::kFloat64).to(l.device()));
  }
  if (o.presence_penalty != 0 || o.frequency_penalty != 0) {
    const auto c = counts.to(l.device(), torch::kFloat64).reshape({-1});  // kept on the CPU
    BTX_CHECK(c.size(0) == v, "penalty counts have {} entries for {} logits", c.size(0), v);
    l = l - o.frequency_penalty * c - o.presence_penalty * (c > 0).to(torch::kFloat64);
  }
  return l;
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
