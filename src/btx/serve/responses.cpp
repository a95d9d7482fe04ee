// The JSON of `btx serve`'s responses (completions.h): whole responses, stream chunks, logprobs
// in completions' and chat's shapes, usage and errors.
#include "btx/serve/responses.h"

#include <algorithm>

namespace btx::serve {

nlohmann::json error_body(const std::string& message, const std::string& type,
                          const std::string& param) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
            {"code", nullptr}}}};
}

std::string openai_finish_reason(FinishReason reason) {
  return reason == FinishReason::kEos ? "stop" : name_of(reason);
}

nlohmann::json usage(size_t prompt_tokens, size_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

namespace {

// A top-N list as completions' {token text: log-probability} (the first of equal texts kept).
nlohmann::json top_object(const TokenLogprob& t, const Tokenizer& tok) {
  nlohmann::json top = nlohmann::json::object();
  for (const auto& [id, lp] : t.top) {
    const std::string& text = tok.piece_text(id);
    if (!top.contains(text)) top[text] = lp;
  }
  return top;
}

nlohmann::json bytes_of(const std::string& s) {
  nlohmann::json b = nlohmann::json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// Chat's logprobs: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
nlohmann::json chat_logprobs(const GenerateResult& r, const Tokenizer& tok) {
  nlohmann::json content = nlohmann::json::array();
  for (const auto& t : r.logprobs) {
    nlohmann::json top = nlohmann::json::array();
    for (const auto& [id, lp] : t.top) {
      const std::string& text = tok.piece_text(id);
      top.push_back({{"token", text}, {"logprob", lp}, {"bytes", bytes_of(text)}});
    }
    const std::string& text = tok.piece_text(t.token);
    content.push_back({{"token", text},
                       {"logprob", t.logprob},
                       {"bytes", bytes_of(text)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}};
}

}  // namespace

ChoiceText::ChoiceText(const CompletionRequest& req, size_t choice, const Tokenizer& tok)
    : prefix_(req.echo ? tok.decode(req.prompt_of(choice)) : ""), chat_(req.chat) {}

std::string ChoiceText::next(std::string generated) {
  std::string text = std::move(prefix_) + std::move(generated);
  prefix_.clear();
  if (chat_ && !spoken_) {
    const auto at = text.find_first_not_of(' ');
    text = at == std::string::npos ? "" : text.substr(at);
  }
  if (!text.empty()) spoken_ = true;
  return text;
}

nlohmann::json completion_logprobs(const CompletionRequest& req, size_t choice,
                                   const ChoiceResult& r, const Tokenizer& tok) {
  nlohmann::json tokens = nlohmann::json::array(), lps = nlohmann::json::array(),
                 tops = nlohmann::json::array(), offsets = nlohmann::json::array();
  size_t offset = 0;
  auto add = [&](int32_t id, const nlohmann::json& lp, const nlohmann::json& top) {
    const std::string& text = tok.piece_text(id);
    tokens.push_back(text);
    lps.push_back(lp);
    tops.push_back(top);
    offsets.push_back(offset);
    offset += text.size();
  };
  if (req.echo) {
    const auto& prompt = req.prompt_of(choice);
    for (size_t k = 0; k < prompt.size(); ++k) {
      if (k == 0 || k - 1 >= r.prompt_logprobs.size()) {
        add(prompt[k], nullptr, nullptr);
      } else {
        const auto& t = r.prompt_logprobs[k - 1];
        add(prompt[k], t.logprob, top_object(t, tok));
      }
    }
  }
  for (const auto& t : r.result.logprobs) add(t.token, t.logprob, top_object(t, tok));
  return {{"tokens", tokens},
          {"token_logprobs", lps},
          {"top_logprobs", tops},
          {"text_offset", offsets}};
}

nlohmann::json completion_response(const CompletionIds& ids, const CompletionRequest& req,
                                   const std::vector<ChoiceResult>& choices, const Tokenizer& tok,
                                   const nlohmann::json& state) {
  nlohmann::json out_choices = nlohmann::json::array();
  size_t completion_tokens = 0;
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto& r = choices[i].result;
    completion_tokens += r.tokens.size();
    const auto finish = openai_finish_reason(r.finish_reason);
    const std::string text = ChoiceText(req, i, tok).next(r.text);
    if (req.chat) {
      out_choices.push_back(
          {{"index", i},
           {"message", {{"role", "assistant"}, {"content", text}}},
           {"logprobs", req.options.logprobs >= 0 ? chat_logprobs(r, tok) : nlohmann::json()},
           {"finish_reason", finish}});
    } else {
      out_choices.push_back(
          {{"text", text},
           {"index", i},
           {"logprobs", req.options.logprobs >= 0 ? completion_logprobs(req, i, choices[i], tok)
                                                  : nlohmann::json()},
           {"finish_reason", finish}});
    }
  }
  nlohmann::json out = {
      {"id", ids.id},           {"object", req.chat ? "chat.completion" : "text_completion"},
      {"created", ids.created}, {"model", ids.model},
      {"choices", out_choices}, {"usage", usage(req.prompt_tokens(), completion_tokens)}};
  if (!state.is_null()) out["btx"] = state;
  return out;
}

nlohmann::json completion_chunk(const CompletionIds& ids, bool chat, size_t index,
                                const std::string& text, const nlohmann::json& finish_reason,
                                bool first) {
  nlohmann::json choice;
  if (chat) {
    nlohmann::json delta = nlohmann::json::object();
    if (first) delta["role"] = "assistant";
    if (first || !text.empty()) delta["content"] = text;
    choice = {{"index", index},
              {"delta", delta},
              {"logprobs", nullptr},
              {"finish_reason", finish_reason}};
  } else {
    choice = {
        {"text", text}, {"index", index}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
  }
  return {{"id", ids.id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", ids.created},
          {"model", ids.model},
          {"choices", {choice}}};
}

nlohmann::json finish_chunk(const CompletionIds& ids, bool chat, size_t index,
                            const GenerateResult& result, const nlohmann::json& state) {
  auto last = completion_chunk(ids, chat, index, "", openai_finish_reason(result.finish_reason));
  if (!state.is_null()) last["btx"] = state;
  return last;
}

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string sse_event(const nlohmann::json& data) {
  return "data: " + dump_json(data) + "\n\n";
}

ResponseStream::ResponseStream(const CompletionIds& ids, const CompletionRequest& req,
                               const Tokenizer& tok)
    : ids_(ids), req_(req), opened_(req.choices(), false), ended_(req.choices(), false) {
  for (size_t i = 0; i < req.choices(); ++i) texts_.emplace_back(req, i, tok);
}

std::vector<std::string> ResponseStream::text(size_t i, std::string generated) {
  const std::string text = texts_[i].next(std::move(generated));
  if (text.empty() && (!req_.chat || opened_[i])) return {};
  const bool first = !opened_[i];
  opened_[i] = true;
  return {sse_event(completion_chunk(ids_, req_.chat, i, text, nullptr, first))};
}

std::vector<std::string> ResponseStream::end(size_t i, const GenerateResult& result,
                                             const nlohmann::json& state,
                                             const std::string& error) {
  ended_[i] = true;
  if (!error.empty()) return {sse_event(error_body(error, "server_error"))};
  generated_ += result.tokens.size();
  return {sse_event(finish_chunk(ids_, req_.chat, i, result, state))};
}

bool ResponseStream::all_ended() const {
  return std::all_of(ended_.begin(), ended_.end(), [](bool e) { return e; });
}

std::vector<std::string> ResponseStream::close() const {
  std::vector<std::string> out;
  if (req_.include_usage) {
    nlohmann::json u = completion_chunk(ids_, req_.chat, 0, "", nullptr);
    u["choices"] = nlohmann::json::array();
    u["usage"] = usage(req_.prompt_tokens(), generated_);
    out.push_back(sse_event(u));
  }
  out.push_back("data: [DONE]\n\n");
  return out;
}

}  // namespace btx::serve
