// Choosing the next token from next-token scores: greedy, or sampled with temperature, top-k
// and top-p.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace btx {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy (argmax)
  int64_t top_k = 0;         // keep the k most probable tokens (0: all)
  double top_p = 1.0;        // keep the smallest set whose probability reaches p
  uint64_t seed = 0;
};

// The token to emit after next-token logits (V) under the options; `u` is a uniform draw in
// [0, 1) (unused when greedy). Checks the options (an error names the bad one).
int64_t choose_token(const torch::Tensor& logits, const SamplingOptions& o, double u);
void validate_sampling(const SamplingOptions& o);

}  // namespace btx
