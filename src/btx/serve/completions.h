// The OpenAI protocol of `btx serve`, apart from HTTP: reading and checking a request body, and
// the JSON of responses, stream chunks and errors.
//  - /v1/completions: prompt (a string, token ids, or a list of either: one set of choices
//    each), max_tokens (default 16; 0 with echo scores the prompt only), temperature (default
//    1), top_p, stop (a string or up to 4), n (choices per prompt), echo, logprobs (the top-N
//    alternatives of each token, N <= Limits::max_logprobs), stream, stream_options
//    {include_usage}, seed, model; plus top_k. With echo and logprobs the prompt's tokens come
//    first with their log-probabilities (the first token's null), as lm-evaluation-harness reads
//    them. Log-probabilities are the model's own distribution (before temperature, top-k and
//    top-p): those `btx eval` sums.
//  - /v1/chat/completions: messages (role and content: a string or text parts) rendered with the
//    model's chat template, max_tokens or max_completion_tokens, logprobs (true) with
//    top_logprobs, and the sampling fields above. The reply is the generated text without its
//    leading spaces.
// Fields OpenAI has but btx does not implement (best_of above n, suffix, penalties, logit_bias,
// tools) are accepted only at their defaults, logprobs with stream are refused, and unknown
// fields are refused, as OpenAI does, so a typo is not silently ignored.
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

struct CompletionIds {
  std::string id;       // "cmpl-..." ("chatcmpl-..." for chat)
  int64_t created = 0;  // unix seconds
  std::string model;
};

// What one choice produced: its generation and, with echo and logprobs, its prompt's scores.
struct ChoiceResult {
  GenerateResult result;
  std::vector<TokenLogprob> prompt_logprobs;  // one per prompt token after the first
};

// The text of one choice as its client sees it, the same in a whole response and in a stream:
// with echo the prompt comes first; a chat reply starts at its first non-space character (a
// template's generation prompt, "Assistant:", is followed by " text").
class ChoiceText {
 public:
  ChoiceText(const CompletionRequest& req, size_t choice, const Tokenizer& tok);
  // What of `generated` (the choice's next text, or all of it) the client is sent.
  std::string next(std::string generated);

 private:
  std::string prefix_;  // the echoed prompt, until sent
  bool chat_ = false;
  bool spoken_ = false;  // a character of the reply was sent
};

// The last stream chunk of choice `index`: its finish reason, and the ensemble's posterior as
// "btx" when `state` is not null.
nlohmann::json finish_chunk(const CompletionIds& ids, bool chat, size_t index,
                            const GenerateResult& result, const nlohmann::json& state);

// The whole response of a non-streaming request, completions' or chat's shape by `req.chat`.
// `state` (the ensemble's posterior after the last choice) is added as "btx" when not null.
nlohmann::json completion_response(const CompletionIds& ids, const CompletionRequest& req,
                                   const std::vector<ChoiceResult>& choices, const Tokenizer& tok,
                                   const nlohmann::json& state);
// Completions' "logprobs" object of one choice: tokens, token_logprobs, top_logprobs and
// text_offset (byte offsets into the choice's text), the prompt's first (its first token has
// null) with echo.
nlohmann::json completion_logprobs(const CompletionRequest& req, size_t choice,
                                   const ChoiceResult& r, const Tokenizer& tok);
// One stream chunk of choice `index` with `text` (chat: a delta, the role on the `first`);
// `finish_reason` null until its last.
nlohmann::json completion_chunk(const CompletionIds& ids, bool chat, size_t index,
                                const std::string& text, const nlohmann::json& finish_reason,
                                bool first = false);
nlohmann::json usage(size_t prompt_tokens, size_t completion_tokens);

// A server-sent event carrying `data` (JSON dumped with invalid UTF-8 replaced).
std::string sse_event(const nlohmann::json& data);
// JSON text with invalid UTF-8 replaced (generated bytes need not be valid UTF-8).
std::string dump_json(const nlohmann::json& j);

}  // namespace btx::serve
