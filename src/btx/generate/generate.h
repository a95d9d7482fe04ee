// Text generation from any Decoder (decoder.h): greedy or sampled (sampling.h), with stop
// strings, a token budget, cancellation and streaming of the text as it becomes final.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "btx/data/tokenizer.h"
#include "btx/generate/decoder.h"
#include "btx/generate/sampling.h"
#include "btx/model/llama.h"
#include "btx/util/names.h"

namespace btx {

// The number of bytes at the end of `s` that begin a UTF-8 character not finished yet (0-3):
// streamed text holds them back, since a byte-level token may be half of a character.
size_t utf8_incomplete_tail(std::string_view s);

struct GenerateOptions {
  int64_t max_tokens = 64;
  SamplingOptions sampling;
  std::vector<std::string> stop;  // generation ends before the first of these in the output
  bool use_cache = true;          // false: recompute the whole prefix for every token
  bool stop_at_eos = true;
  // Log-probabilities of each generated token under the model (its own distribution: before
  // temperature, top-k and top-p) with the `logprobs` most probable alternatives; -1: none.
  int64_t logprobs = -1;
  // Checked before every token: when it reads true, generation ends ("cancelled").
  const std::atomic<bool>* cancel = nullptr;
};

// One token's log-probability and the most probable tokens at its position, best first.
struct TokenLogprob {
  int32_t token = 0;
  double logprob = 0;
  std::vector<std::pair<int32_t, double>> top;
};
// `scores` (V: logits or log-probs) as log-probabilities: `token`'s and the `top_n` best.
TokenLogprob token_logprob(const torch::Tensor& scores, int32_t token, int64_t top_n);

// Why a generation ended; the names are those `btx generate` prints and the log shows.
enum class FinishReason {
  kLength,     // "length": max_tokens or the context
  kStop,       // "stop": a stop string
  kEos,        // "eos": the model ended its text
  kCancelled,  // "cancelled": the caller gave up
};
const std::vector<Named<FinishReason>>& names(FinishReason);

struct GenerateResult {
  std::string text;             // the generated text (without the prompt, cut at a stop string)
  std::vector<int32_t> tokens;  // the generated tokens
  FinishReason finish_reason = FinishReason::kLength;
  std::vector<TokenLogprob> logprobs;  // one per generated token, when options.logprobs >= 0
};

// The log-probability of every token of `seq` after the first, given the tokens before it, with
// the `top_n` most probable alternatives at each position: what `btx eval` sums (as losses) over
// a text. Leaves the decoder reset.
std::vector<TokenLogprob> score_tokens(Decoder& d, const std::vector<int32_t>& seq, int64_t top_n);

// Checks a request before any work: options valid, the prompt non-empty and shorter than the
// model's context (room for one new token). The error names the bad value.
void validate_request(int64_t context, const std::vector<int32_t>& prompt,
                      const GenerateOptions& o);

// One generation, token by token: the sampling draws, the text, stop strings, the budget, and
// the text that is final. generate() drives one with a Decoder; the server's batch drives
// several at once, one row each.
class Generation {
 public:
  // `prompt` is checked (validate_request); `on_text` receives the text as it becomes final.
  Generation(const Tokenizer& tok, std::vector<int32_t> prompt, GenerateOptions o, int64_t context,
             std::function<void(const std::string&)> on_text = {});
  // Whether another token is wanted: within max_tokens and the context, not stopped, not
  // cancelled.
  bool wants_more();
  // Chooses the next token from its scores (V) and takes it in.
  void take(const torch::Tensor& scores);
  // Prompt and generated tokens so far.
  const std::vector<int32_t>& sequence() const { return all_; }
  // Ends it: releases the text held back and returns the result.
  GenerateResult finish();

 private:
  void flush(bool all_of_it);
  const Tokenizer& tok_;
  std::vector<int32_t> all_;
  GenerateOptions o_;
  int64_t context_;
  std::function<void(const std::string&)> on_text_;
  std::mt19937_64 rng_;
  torch::Tensor counts_;  // (V) how often each token was generated; with penalties only
  GenerateResult r_;
  size_t emitted_ = 0;  // bytes of r_.text given to on_text
  bool ended_ = false;
};

// Generates from `prompt` (token ids), starting the decoder afresh. `on_text` receives the text
// as it becomes final (text that could still turn into a stop string is held back until it
// cannot). A prompt that does not fit the model's context, or an empty one, is an error.
// (`use_cache` is the decoder's: it is chosen when the decoder is made.)
GenerateResult generate(Decoder& d, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& o,
                        const std::function<void(const std::string&)>& on_text = {});
// The same for one model, decoded as o.use_cache says.
GenerateResult generate(CausalLM& model, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& o,
                        const std::function<void(const std::string&)>& on_text = {});

}  // namespace btx
