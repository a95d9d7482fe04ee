// The mixture sampler: batches of token windows, each row from one domain drawn with probability
// proportional to its weight, at a uniform start. A batch is a pure function of (seed, step, row),
// with no hidden state, so a run resumed at step s sees exactly the batches it would have seen.
// It does not shuffle epochs or avoid repeats: windows are drawn with replacement.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "btx/data/shards.h"

namespace btx {

// A share of the data: each shard is cut into blocks of `block_tokens`, dealt to `count` parts
// by a seeded permutation; the sampler then draws windows only inside blocks of part `index`.
// BTM's random-split baseline gives expert i part i of every domain.
struct DataPartition {
  int index = 0;
  int count = 1;  // 1: all of the data
  uint64_t seed = 0;
  int64_t block_tokens = 8192;
};

class MixtureSampler {
 public:
  // `weights`: domain -> weight >= 0; empty = uniform over all domains of `shards`. Throws
  // btx::Error for a weight of an unknown domain, a negative or all-zero weight, or a shard of a
  // weighted domain shorter than seq_len + 1 tokens.
  MixtureSampler(const ShardSet& shards, std::string split, std::map<std::string, double> weights,
                 int64_t seq_len, uint64_t seed, DataPartition partition = {});

  // [B, T+1] int64 windows of T+1 consecutive tokens (inputs are [:, :-1], targets [:, 1:]).
  torch::Tensor batch(int64_t step, int64_t batch_size) const;
  // Same, and the index into domains() of each row's domain (resized to B).
  torch::Tensor batch_with_domains(int64_t step, int64_t batch_size,
                                   std::vector<int>* domain_index) const;
  // Rows [begin, end) of step `step`'s batch: row r does not depend on the batch size, so data
  // parallel ranks can each take their own rows of one global batch.
  torch::Tensor rows(int64_t step, int64_t begin, int64_t end,
                     std::vector<int>* domain_index = nullptr) const;

  const std::vector<std::string>& domains() const { return domains_; }  // weight > 0, sorted
  const std::vector<double>& probabilities() const { return probs_; }   // [N] sums to 1
  const std::string& split() const { return split_; }
  int64_t seq_len() const { return seq_len_; }

 private:
  std::string split_;
  int64_t seq_len_;
  uint64_t seed_;
  std::vector<std::string> domains_;
  std::vector<double> probs_;
  std::vector<double> cumulative_;  // [N] running sum of probs_, last = 1
  std::vector<std::shared_ptr<const TokenShard>> shards_;
  // With a partition: per shard, the first token of each block this part may draw from.
  std::vector<std::vector<int64_t>> block_starts_;
  int64_t block_tokens_ = 0;
};

}  // namespace btx
