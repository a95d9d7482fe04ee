// The responses of `btx serve` (the OpenAI protocol, apart from HTTP): one builder for a whole
// response and a streamed one, completions' and chat's shapes, logprobs, usage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/serve/completions.h"

namespace btx::serve {

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

// A streamed response, as its choices progress: what to send for each choice's new text and
// for its end, then the close (usage when asked, "[DONE]"). The events' text, finish reasons
// and posterior are the whole response's (completion_response): both use ChoiceText and the
// same finish reasons. Chat's first chunk of a choice carries the role even without text.
class ResponseStream {
 public:
  ResponseStream(const CompletionIds& ids, const CompletionRequest& req, const Tokenizer& tok);
  // The events for choice `i`'s newly generated text (none when the client is sent nothing yet).
  std::vector<std::string> text(size_t i, std::string generated);
  // Choice `i` has ended: with `error`, an error event; else its last chunk (the finish reason,
  // the ensemble's posterior `state`). Its generated tokens count toward usage.
  std::vector<std::string> end(size_t i, const GenerateResult& result, const nlohmann::json& state,
                               const std::string& error = "");
  bool ended(size_t i) const { return ended_[i]; }
  bool all_ended() const;
  // After every choice has ended: the usage chunk (stream_options.include_usage) and [DONE].
  std::vector<std::string> close() const;

 private:
  CompletionIds ids_;
  const CompletionRequest& req_;
  std::vector<ChoiceText> texts_;
  std::vector<bool> opened_, ended_;  // per choice: first chunk sent, done
  size_t generated_ = 0;              // tokens of the ended choices
};

}  // namespace btx::serve
