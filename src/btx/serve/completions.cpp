#include "btx/serve/completions.h"

#include <algorithm>
#include <limits>
#include <set>

#include "btx/util/fs.h"
#include "btx/util/utf8.h"

namespace btx::serve {

namespace {

constexpr const char* kInvalid = "invalid_request_error";

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw RequestError(400, kInvalid, param, message);
}

// A value as the user wrote it, shortened for a message.
std::string shown(const nlohmann::json& v) {
  std::string s = dump_json(v);
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

// The fields each endpoint takes (some only at their defaults).
const std::vector<std::string>& completion_fields() {
  static const std::vector<std::string> k = {"prompt",
                                             "model",
                                             "max_tokens",
                                             "temperature",
                                             "top_p",
                                             "top_k",
                                             "stop",
                                             "stream",
                                             "seed",
                                             "stream_options",
                                             "n",
                                             "best_of",
                                             "echo",
                                             "user",
                                             "logprobs",
                                             "presence_penalty",
                                             "frequency_penalty",
                                             "suffix",
                                             "logit_bias"};
  return k;
}
const std::vector<std::string>& chat_fields() {
  static const std::vector<std::string> k = {"messages",
                                             "model",
                                             "max_tokens",
                                             "max_completion_tokens",
                                             "temperature",
                                             "top_p",
                                             "top_k",
                                             "stop",
                                             "stream",
                                             "seed",
                                             "stream_options",
                                             "n",
                                             "user",
                                             "logprobs",
                                             "top_logprobs",
                                             "presence_penalty",
                                             "frequency_penalty",
                                             "logit_bias"};
  return k;
}

class Fields {
 public:
  explicit Fields(const nlohmann::json& j) : j_(j) {}
  bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  const nlohmann::json& at(const std::string& key) const { return j_.at(key); }

  int64_t integer(const std::string& key, int64_t fallback, int64_t lo, int64_t hi) const {
    if (!has(key)) return fallback;
    const auto& v = j_.at(key);
    if (!v.is_number_integer())
      bad(key, fmt::format("{} must be an integer, got {}", key, shown(v)));
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) {
      bad(key, fmt::format("{} must be at most {}, got {}", key, hi, shown(v)));
    }
    const auto x = v.get<int64_t>();
    if (x < lo) bad(key, fmt::format("{} must be at least {}, got {}", key, lo, x));
    if (x > hi) bad(key, fmt::format("{} must be at most {}, got {}", key, hi, x));
    return x;
  }
  double number(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    const auto& v = j_.at(key);
    if (!v.is_number()) bad(key, fmt::format("{} must be a number, got {}", key, shown(v)));
    return v.get<double>();
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const auto& v = j_.at(key);
    if (!v.is_boolean()) bad(key, fmt::format("{} must be true or false, got {}", key, shown(v)));
    return v.get<bool>();
  }
  // A field btx accepts only at OpenAI's default (`ok` says whether the value is one).
  void only_default(const std::string& key, bool ok, const std::string& supported) const {
    if (has(key) && !ok) {
      bad(key, fmt::format("{} = {} is not supported by btx serve ({})", key, shown(j_.at(key)),
                           supported));
    }
  }

 private:
  const nlohmann::json& j_;
};

// Token ids from an array of integers; `what` names it in errors.
std::vector<int32_t> read_ids(const nlohmann::json& p, int64_t vocab_size,
                              const std::string& what) {
  std::vector<int32_t> ids;
  for (const auto& x : p) {
    // Above int64's range the number is unsigned: shown as sent, not wrapped.
    const bool huge =
        x.is_number_unsigned() && x.get<uint64_t>() > static_cast<uint64_t>(vocab_size);
    const auto id = huge ? vocab_size : x.get<int64_t>();
    if (id < 0 || id >= vocab_size) {
      bad("prompt", fmt::format("{} token id {} is outside the vocabulary [0, {})", what,
                                dump_json(x), vocab_size));
    }
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

bool all_integers(const nlohmann::json& p) {
  return p.is_array() && !p.empty() &&
         std::all_of(p.begin(), p.end(), [](const auto& x) { return x.is_number_integer(); });
}

// A prompt (a string or token ids) or a list of them.
std::vector<std::vector<int32_t>> read_prompts(const nlohmann::json& p, const Tokenizer& tok,
                                               int64_t vocab_size, const Limits& limits) {
  auto encode = [&](const nlohmann::json& s) { return tok.encode(s.get<std::string>()); };
  if (p.is_string()) return {encode(p)};
  if (all_integers(p)) return {read_ids(p, vocab_size, "prompt")};
  if (p.is_array() && !p.empty()) {
    if (p.size() > limits.max_prompts) {
      bad("prompt", fmt::format("prompt has {} prompts; at most {} are allowed in one request",
                                p.size(), limits.max_prompts));
    }
    std::vector<std::vector<int32_t>> out;
    for (size_t i = 0; i < p.size(); ++i) {
      const std::string what = fmt::format("prompt[{}]", i);
      if (p[i].is_string()) {
        out.push_back(encode(p[i]));
      } else if (all_integers(p[i])) {
        out.push_back(read_ids(p[i], vocab_size, what));
      } else {
        bad("prompt",
            fmt::format("{} must be a string or an array of token ids, got {}", what, shown(p[i])));
      }
    }
    return out;
  }
  bad("prompt", fmt::format("prompt must be a string, an array of token ids, or an array of "
                            "those, got {}",
                            shown(p)));
}

void check_fields(const nlohmann::json& j, const std::vector<std::string>& known) {
  if (!j.is_object())
    bad("", fmt::format("the request body must be a JSON object, got {}", shown(j)));
  for (const auto& [key, value] : j.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      bad(key, fmt::format("unknown field '{}' (known: {})", key, fmt::join(known, ", ")));
    }
  }
}

nlohmann::json parse_body(const std::string& body) {
  if (const size_t at = utf8_invalid_at(body); at != std::string::npos) {
    bad("", fmt::format("the request body is not valid UTF-8: byte {} is {}", at,
                        utf8_problem(body, at)));
  }
  const size_t depth = json_nesting_depth(body);
  if (depth > kMaxJsonDepth) {
    bad("", fmt::format("the request body nests arrays and objects {} levels deep; at most {} "
                        "are accepted",
                        depth, kMaxJsonDepth));
  }
  try {
    return nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e999
    bad("", fmt::format("the request body is not valid JSON ({})", e.what()));
  }
}

// The fields both endpoints share: the model, the sampling, stop, n, stream; and the prompts'
// lengths. `max_tokens` is the value already read (completions: max_tokens; chat: either key).
void parse_common(const Fields& f, const ServedModel& model, const Limits& limits,
                  uint64_t default_seed, int64_t max_tokens, CompletionRequest& r) {
  if (f.has("model")) {
    const auto& m = f.at("model");
    if (!m.is_string() || m.get<std::string>() != model.id) {
      throw RequestError(
          404, kInvalid, "model",
          fmt::format("model {} is not served here; this server serves '{}'", shown(m), model.id));
    }
  }
  if (f.has("user") && !f.at("user").is_string()) {
    bad("user", fmt::format("user must be a string, got {}", shown(f.at("user"))));
  }
  for (size_t i = 0; i < r.prompts.size(); ++i) {
    const std::string which = r.prompts.size() == 1 ? "the prompt" : fmt::format("prompt[{}]", i);
    if (r.prompts[i].empty()) {
      bad("prompt", fmt::format("{} is empty (it must have at least one token)", which));
    }
    if (static_cast<int64_t>(r.prompts[i].size()) >= model.context) {
      throw RequestError(400, kInvalid, "prompt",
                         fmt::format("{} has {} tokens but the model's context is {} (it "
                                     "must leave room for at least one new token)",
                                     which, r.prompts[i].size(), model.context));
    }
  }
  auto& o = r.options;
  o.max_tokens = max_tokens;
  if (o.max_tokens > limits.max_tokens) {
    bad("max_tokens", fmt::format("max_tokens {} is above this server's limit of {}", o.max_tokens,
                                  limits.max_tokens));
  }
  o.sampling.temperature = f.number("temperature", 1.0);
  if (!(o.sampling.temperature >= 0)) {
    bad("temperature", fmt::format("temperature must be >= 0, got {}", o.sampling.temperature));
  }
  o.sampling.top_p = f.number("top_p", 1.0);
  if (!(o.sampling.top_p > 0 && o.sampling.top_p <= 1)) {
    bad("top_p", fmt::format("top_p must be in (0, 1], got {}", o.sampling.top_p));
  }
  o.sampling.top_k = f.integer("top_k", 0, 0, std::numeric_limits<int64_t>::max());
  auto penalty = [&](const char* k) {
    const double x = f.number(k, 0.0);
    if (!(x >= -2 && x <= 2)) bad(k, fmt::format("{} must be in [-2, 2], got {}", k, x));
    return x;
  };
  o.sampling.presence_penalty = penalty("presence_penalty");
  o.sampling.frequency_penalty = penalty("frequency_penalty");
  if (f.has("logit_bias")) {
    const auto& lb = f.at("logit_bias");
    if (!lb.is_object()) {
      bad("logit_bias", fmt::format("logit_bias must be an object of token ids and biases, e.g. "
                                    "{{\"50256\": -100}}, got {}",
                                    shown(lb)));
    }
    for (const auto& [key, value] : lb.items()) {
      const bool digits =
          !key.empty() && key.size() <= 10 &&
          std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
      const int64_t id = digits ? std::stoll(key) : -1;
      if (!digits || id >= model.vocab_size) {
        bad("logit_bias", fmt::format("logit_bias key {} is not a token id in [0, {})",
                                      shown(nlohmann::json(key)), model.vocab_size));
      }
      if (!value.is_number() || !(value.get<double>() >= -100 && value.get<double>() <= 100)) {
        bad("logit_bias", fmt::format("logit_bias[\"{}\"] must be a number in [-100, 100], got {}",
                                      key, shown(value)));
      }
      o.sampling.logit_bias.emplace_back(static_cast<int32_t>(id), value.get<double>());
    }
    std::sort(o.sampling.logit_bias.begin(), o.sampling.logit_bias.end());  // by token id
  }
  o.sampling.seed =
      f.has("seed")
          ? static_cast<uint64_t>(f.integer("seed", 0, std::numeric_limits<int64_t>::min(),
                                            std::numeric_limits<int64_t>::max()))
          : default_seed;
  if (f.has("stop")) {
    const auto& s = f.at("stop");
    std::vector<nlohmann::json> items;
    if (s.is_string()) {
      items.push_back(s);
    } else if (s.is_array()) {
      items.assign(s.begin(), s.end());
    } else {
      bad("stop", fmt::format("stop must be a string or an array of strings, got {}", shown(s)));
    }
    if (items.size() > limits.max_stop) {
      bad("stop", fmt::format("stop has {} strings; at most {} are allowed", items.size(),
                              limits.max_stop));
    }
    for (const auto& item : items) {
      if (!item.is_string() || item.get<std::string>().empty()) {
        bad("stop", fmt::format("each stop must be a non-empty string, got {}", shown(item)));
      }
      o.stop.push_back(item.get<std::string>());
    }
  }
  r.n = f.integer("n", 1, 1, limits.max_n);
  r.stream = f.boolean("stream", false);
  if (f.has("stream_options")) {
    const auto& so = f.at("stream_options");
    if (!so.is_object()) {
      bad("stream_options", fmt::format("stream_options must be an object, got {}", shown(so)));
    }
    for (const auto& [key, value] : so.items()) {
      if (key != "include_usage") {
        bad("stream_options", fmt::format("unknown field 'stream_options.{}' (known: "
                                          "include_usage)",
                                          key));
      }
    }
    r.include_usage = Fields(so).boolean("include_usage", false);
  }
}

// A message's content: a string, or an array of text parts ({"type": "text", "text": ...}).
std::string message_content(const nlohmann::json& c, const std::string& where) {
  if (c.is_string()) return c.get<std::string>();
  if (c.is_array()) {
    std::string out;
    for (size_t k = 0; k < c.size(); ++k) {
      const auto& part = c[k];
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string()) {
        bad(where, fmt::format("{}[{}] must be a text part {{\"type\": \"text\", \"text\": "
                               "...}} (btx serves text only), got {}",
                               where, k, shown(part)));
      }
      out += part["text"].get<std::string>();
    }
    return out;
  }
  bad(where, fmt::format("{} must be a string or an array of text parts, got {}", where, shown(c)));
}

}  // namespace

CompletionRequest parse_completion_request(const std::string& body, const Tokenizer& tok,
                                           const ServedModel& model, const Limits& limits,
                                           uint64_t default_seed) {
  const nlohmann::json j = parse_body(body);
  check_fields(j, completion_fields());
  const Fields f(j);
  CompletionRequest r;
  if (!j.contains("prompt")) bad("prompt", "prompt is required");
  r.prompts = read_prompts(j.at("prompt"), tok, model.vocab_size, limits);
  parse_common(f, model, limits, default_seed,
               f.integer("max_tokens", 16, 0, std::numeric_limits<int64_t>::max()), r);
  f.only_default("best_of", f.has("best_of") && f.at("best_of") == r.n,
                 "best_of must equal n: every choice is returned");
  f.only_default("suffix", f.has("suffix") && f.at("suffix") == "", "no suffix");
  r.echo = f.boolean("echo", false);
  r.options.logprobs = f.integer("logprobs", -1, 0, limits.max_logprobs);
  if (r.stream && r.options.logprobs >= 0) {
    bad("logprobs", "logprobs with stream is not supported by btx serve: ask without stream");
  }
  return r;
}

CompletionRequest parse_chat_request(const std::string& body, const Tokenizer& tok,
                                     const ChatTemplate& chat, const ServedModel& model,
                                     const Limits& limits, uint64_t default_seed) {
  const nlohmann::json j = parse_body(body);
  check_fields(j, chat_fields());
  const Fields f(j);
  CompletionRequest r;
  r.chat = true;
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty()) {
    bad("messages", "messages is required: a non-empty array of {\"role\", \"content\"}");
  }
  if (chat.empty()) {
    bad("messages", "this model has no chat template: start btx serve with --chat-template");
  }
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < j["messages"].size(); ++i) {
    const auto& m = j["messages"][i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad(where, fmt::format("{} must be an object, got {}", where, shown(m)));
    for (const auto& [key, value] : m.items()) {
      if (key != "role" && key != "content" && key != "name") {
        bad(where + "." + key,
            fmt::format("unknown field '{}.{}' (known: role, content, name)", where, key));
      }
    }
    if (!m.contains("role") || !m["role"].is_string()) {
      bad(where + ".role", fmt::format("{}.role must be a string", where));
    }
    const std::string role = m["role"];
    if (!chat.has_role(role)) {
      bad(where + ".role", fmt::format("{}.role: unknown role \"{}\" (this model's chat "
                                       "template has {})",
                                       where, role, fmt::join(chat.role_names(), ", ")));
    }
    if (!m.contains("content")) bad(where + ".content", where + ".content is required");
    messages.push_back({role, message_content(m["content"], where + ".content")});
  }
  try {
    r.prompts = {tok.encode(chat.render(messages, true))};
  } catch (const Error& e) {  // a model's template refusing the conversation
    bad("messages", e.what());
  }
  const int64_t max_tokens =
      f.has("max_completion_tokens")
          ? f.integer("max_completion_tokens", 16, 0, std::numeric_limits<int64_t>::max())
          : f.integer("max_tokens", limits.max_tokens, 0, std::numeric_limits<int64_t>::max());
  parse_common(f, model, limits, default_seed, max_tokens, r);
  for (const auto& s : chat.stop) r.options.stop.push_back(s);
  const bool logprobs = f.boolean("logprobs", false);
  const int64_t top = f.integer("top_logprobs", 0, 0, limits.max_logprobs);
  if (f.has("top_logprobs") && !logprobs) {
    bad("top_logprobs", "top_logprobs needs logprobs: true");
  }
  r.options.logprobs = logprobs ? top : -1;
  if (r.stream && logprobs) {
    bad("logprobs", "logprobs with stream is not supported by btx serve: ask without stream");
  }
  return r;
}

GenerateOptions CompletionRequest::options_of(size_t choice) const {
  GenerateOptions o = options;
  o.sampling.seed += choice % static_cast<size_t>(n);
  return o;
}

size_t CompletionRequest::prompt_tokens() const {
  size_t total = 0;
  for (const auto& p : prompts) total += p.size();
  return total;
}

}  // namespace btx::serve
