// Choosing the next token from next-token scores: greedy, or sampled with temperature, top-k
// and top-p.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace btx {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy (argmax)
  int64_t top_k = 0;         // keep the k most probable tokens (0: all)
  double top_p = 1.0;        // keep the smallest set whose probability reaches p
  uint64_t seed = 0;
  // OpenAI's penalties over the tokens generated so far (not the prompt), before the choice:
  // logit[j] -= frequency_penalty * count[j] + presence_penalty * (count[j] > 0).
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  // Added to the logits of these tokens before the choice (OpenAI's logit_bias, -100..100).
  std::vector<std::pair<int32_t, double>> logit_bias;

  bool adjusts_logits() const {
    return presence_penalty != 0 || frequency_penalty != 0 || !logit_bias.empty();
  }
};

// The logits a choice is made from (V): `logits` with the logit bias added and the penalties for
// `counts` (V: how often each token has been generated so far) taken off. `logits` itself when
// the options adjust nothing.
torch::Tensor adjusted_logits(const torch::Tensor& logits, const torch::Tensor& counts,
                              const SamplingOptions& o);

// The token to emit after next-token logits (V) under the options; `u` is a uniform draw in
// [0, 1) (unused when greedy). Checks the options (an error names the bad one).
int64_t choose_token(const torch::Tensor& logits, const SamplingOptions& o, double u);
void validate_sampling(const SamplingOptions& o);

}  // namespace btx
