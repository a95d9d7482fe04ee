// The OpenAI protocol of `btx serve`, apart from HTTP: reading and checking a request body, and
// errors (the responses' JSON is responses.h).
//  - /v1/completions: prompt (a string, token ids, or a list of either: one set of choices
//    each), max_tokens (default 16; 0 with echo scores the prompt only), temperature (default
//    1), top_p, stop (a string or up to 4), n (choices per prompt), echo, logprobs (the top-N
//    alternatives of each token, N <= Limits::max_logprobs), stream, stream_options
//    {include_usage}, seed, model, presence_penalty and frequency_penalty (-2..2, OpenAI's
//    formulas over the tokens generated so far), logit_bias ({"id": -100..100}); plus top_k.
//    With echo and logprobs the prompt's tokens come first with their log-probabilities (the
//    first token's null), as lm-evaluation-harness reads them. Log-probabilities are the model's
//    own distribution (before temperature, top-k, top-p, penalties and bias): those `btx eval`
//    sums.
//  - /v1/chat/completions: messages (role and content: a string or text parts) rendered with the
//    model's chat template, max_tokens or max_completion_tokens, logprobs (true) with
//    top_logprobs, and the sampling fields above. The reply is the generated text without its
//    leading spaces.
// Fields OpenAI has but btx does not implement (best_of above n, suffix, tools) are accepted only
// at their defaults, logprobs with stream are refused, and unknown fields are refused, as OpenAI
// does, so a typo is not silently ignored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/data/chat_template.h"
#include "btx/data/tokenizer.h"
#include "btx/generate/generate.h"
#include "btx/util/error.h"

namespace btx::serve {

struct Limits {
  int64_t max_tokens = 512;          // the most tokens one request may ask for
  size_t max_body_bytes = 1u << 20;  // request bodies above this get 413
  size_t max_stop = 4;               // stop strings per request
  int64_t max_logprobs = 20;         // alternatives per token (logprobs, top_logprobs)
  int64_t max_n = 16;                // choices per prompt (n)
  size_t max_prompts = 64;           // prompts in one request
};

// A request the server refuses: the HTTP status, OpenAI's error type and the field at fault.
struct RequestError : Error {
  RequestError(int status, std::string type, std::string param, const std::string& message)
      : Error(message), status(status), type(std::move(type)), param(std::move(param)) {}
  int status;
  std::string type;
  std::string param;
};

// One request: one or more prompts, `n` choices of each. OpenAI's order: prompt i's choices are
// i*n .. i*n+n-1; choice j of a prompt samples with seed + j.
struct CompletionRequest {
  std::vector<std::vector<int32_t>> prompts;  // token ids
  GenerateOptions options;                    // options.logprobs: -1 when none are asked for
  int64_t n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the usage
  bool echo = false;           // completions: the prompt (and its log-probabilities) first
  bool chat = false;           // a chat completion: chat's response shapes

  size_t choices() const { return prompts.size() * static_cast<size_t>(n); }
  const std::vector<int32_t>& prompt_of(size_t choice) const { return prompts[choice / n]; }
  GenerateOptions options_of(size_t choice) const;
  size_t prompt_tokens() const;  // of every prompt, once each
};

// What a request is checked against: the served model's id, vocabulary and context.
struct ServedModel {
  std::string id;
  int64_t context = 0;
  int64_t vocab_size = 0;
};

// Parses and checks a /v1/completions body. `default_seed` seeds sampling when the request gives
// none. Throws RequestError (400; 404 for another model's name) naming the field and what it
// expects.
CompletionRequest parse_completion_request(const std::string& body, const Tokenizer& tok,
                                           const ServedModel& model, const Limits& limits,
                                           uint64_t default_seed);

// Parses and checks a /v1/chat/completions body: `messages` rendered with `chat` (a role it lacks
// is an error naming messages[i].role), its stop strings added to the request's.
CompletionRequest parse_chat_request(const std::string& body, const Tokenizer& tok,
                                     const ChatTemplate& chat, const ServedModel& model,
                                     const Limits& limits, uint64_t default_seed);

// {"error": {"message", "type", "param", "code"}}, OpenAI's error shape.
nlohmann::json error_body(const std::string& message, const std::string& type,
                          const std::string& param = "");

// OpenAI's finish reasons: "eos" (the model ended) is "stop", as OpenAI reports it.
std::string openai_finish_reason(FinishReason reason);

// JSON text with invalid UTF-8 replaced (generated bytes need not be valid UTF-8).
std::string dump_json(const nlohmann::json& j);

}  // namespace btx::serve
