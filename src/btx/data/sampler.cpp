// MixtureSampler: each row's random numbers come from a splitmix64 stream seeded by
// (seed, step, row), so any batch can be rebuilt from those three numbers alone. The domain is
// found by inverting the cumulative weights; the start is uniform over all full windows.
#include "btx/data/sampler.h"

#include <algorithm>
#include <cmath>

#include "btx/util/error.h"

namespace btx {

MixtureSampler::MixtureSampler(const ShardSet& shards, std::string split,
                               std::map<std::string, double> weights, int64_t seq_len,
                               uint64_t seed, DataPartition part)
    : split_(std::move(split)), seq_len_(seq_len), seed_(seed) {
  BTX_CHECK(part.count >= 1 && part.index >= 0 && part.index < part.count,
            "data partition {} of {} is invalid", part.index, part.count);
  BTX_CHECK(seq_len >= 1, "sampler seq_len must be >= 1, got {}", seq_len);
  BTX_CHECK(split_ == "train" || split_ == "valid" || split_ == "test",
            "unknown split '{}' (expected train, valid or test)", split_);
  if (weights.empty()) {
    for (const auto& d : shards.domains()) weights[d] = 1.0;
  }
  double total = 0;
  for (const auto& [name, w] : weights) {
    if (!shards.has(name)) {
      fail("mixture weight for unknown domain '{}' (the data in {} has: {})", name,
           shards.dir().string(), fmt::join(shards.domains(), ", "));
    }
    BTX_CHECK(w >= 0 && std::isfinite(w), "mixture weight of domain '{}' must be >= 0, got {}",
              name, w);
    total += w;
  }
  BTX_CHECK(total > 0, "mixture weights are all zero: at least one domain needs a weight > 0");
  double run = 0;
  for (const auto& [name, w] : weights) {  // std::map: sorted by name
    if (w == 0) continue;
    auto shard = shards.shard_ptr(name, split_);
    BTX_CHECK(shard->size() >= seq_len + 1,
              "domain '{}' has {} {} tokens ({}), fewer than seq_len + 1 = {}: prepare more "
              "data or use a shorter seq_len",
              name, shard->size(), split_, shard->path().string(), seq_len + 1);
    domains_.push_back(name);
    probs_.push_back(w / total);
    run += w / total;
    cumulative_.push_back(run);
    shards_.push_back(std::move(shard));
  }
  cumulative_.back() = 1.0;
  if (part.count > 1) {
    block_tokens_ = std::max(part.block_tokens, 2 * (seq_len + 1));
    for (size_t k = 0; k < shards_.size(); ++k) {
      const int64_t n_blocks = shards_[k]->size() / block_tokens_;
      BTX_CHECK(n_blocks >= part.count,
                "domain '{}' has {} {} tokens: too few to split into {} parts of blocks of {} "
                "tokens",
                domains_[k], shards_[k]->size(), split_, part.count, block_tokens_);
      const auto perm = seeded_permutation(static_cast<size_t>(n_blocks),
                                           derive_seed(part.seed, "partition/" + domains_[k]));
      std::vector<int64_t> mine;
      for (size_t i = 0; i < perm.size(); ++i) {
        if (static_cast<int>(i % static_cast<size_t>(part.count)) == part.index) {
          mine.push_back(static_cast<int64_t>(perm[i]) * block_tokens_);
        }
      }
      std::sort(mine.begin(), mine.end());
      block_starts_.push_back(std::move(mine));
    }
  }
}

torch::Tensor MixtureSampler::rows(int64_t step, int64_t begin, int64_t end,
                                   std::vector<int>* domain_index) const {
  BTX_CHECK(step >= 0 && begin >= 0 && end >= begin,
            "sampler: invalid request step {} rows [{}, {})", step, begin, end);
  const int64_t n = end - begin;
  const int64_t width = seq_len_ + 1;
  torch::Tensor out = torch::empty({n, width}, torch::kLong);  // [B, T+1]
  int64_t* data = out.data_ptr<int64_t>();
  if (domain_index != nullptr) domain_index->assign(static_cast<size_t>(n), 0);
  const uint64_t step_seed = derive_seed(seed_, "sampler/" + split_, static_cast<uint64_t>(step));
  for (int64_t r = 0; r < n; ++r) {
    uint64_t state = mix64(step_seed ^ mix64(static_cast<uint64_t>(begin + r)));
    const auto next = [&state] {
      state += 0x9E3779B97F4A7C15ULL;
      return mix64(state);
    };
    const double u = static_cast<double>(next() >> 11) * 0x1.0p-53;  // uniform in [0, 1)
    const auto d = static_cast<size_t>(std::upper_bound(cumulative_.begin(), cumulative_.end(), u) -
                                       cumulative_.begin());
    const size_t k = std::min(d, shards_.size() - 1);
    const auto& shard = *shards_[k];
    int64_t start;
    if (block_starts_.empty()) {
      start = static_cast<int64_t>(next() % static_cast<uint64_t>(shard.size() - width + 1));
    } else {  // a block of this part, then a window that lies inside it
      const auto& blocks = block_starts_[k];
      start = blocks[next() % blocks.size()] +
              static_cast<int64_t>(next() % static_cast<uint64_t>(block_tokens_ - width + 1));
    }
    shard.read(start, width, data + r * width);
    if (domain_index != nullptr) (*domain_index)[static_cast<size_t>(r)] = static_cast<int>(k);
  }
  return out;
}

torch::Tensor MixtureSampler::batch(int64_t step, int64_t batch_size) const {
  return rows(step, 0, batch_size);
}

torch::Tensor MixtureSampler::batch_with_domains(int64_t step, int64_t batch_size,
                                                 std::vector<int>* domain_index) const {
  return rows(step, 0, batch_size, domain_index);
}

}  // namespace btx
