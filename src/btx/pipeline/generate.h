// Text generation from one model (dense, MoE, SMEAR): incremental decoding with a KV cache where
// the model allows it (dense and per-token MoE routers), full recomputation otherwise (SMEAR's
// prefix-mean router), greedy or sampled (temperature, top-k, top-p, a seed), with stop strings,
// a token budget and streaming of the text as it is produced.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "btx/data/tokenizer.h"
#include "btx/model/llama.h"

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

struct GenerateOptions {
  int64_t max_tokens = 64;
  SamplingOptions sampling;
  std::vector<std::string> stop;  // generation ends before the first of these in the output
  bool use_cache = true;          // false: recompute the whole prefix for every token
  bool stop_at_eos = true;
};

struct GenerateResult {
  std::string text;             // the generated text (without the prompt, cut at a stop string)
  std::vector<int32_t> tokens;  // the generated tokens
  std::string finish_reason;    // "length" (max_tokens or the context), "stop", "eos"
};

// Generates from `prompt` (token ids). `on_text` receives the text as it becomes final (text
// that could still turn into a stop string is held back until it cannot). A prompt that does not
// fit the model's context, or an empty one, is an error.
GenerateResult generate(CausalLM& model, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& o,
                        const std::function<void(const std::string&)>& on_text = {});

}  // namespace btx
