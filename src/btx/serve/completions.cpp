#include "btx/serve/completions.h"

#include <algorithm>
#include <limits>
#include <set>

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

// The fields a request may have; the second group only at their defaults.
const std::vector<std::string>& known_fields() {
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

std::vector<int32_t> read_prompt(const nlohmann::json& p, const Tokenizer& tok,
                                 int64_t vocab_size) {
  auto encode = [&](const nlohmann::json& s) { return tok.encode(s.get<std::string>()); };
  if (p.is_string()) return encode(p);
  if (p.is_array() && p.size() == 1 && p[0].is_string()) return encode(p[0]);
  if (p.is_array() && !p.empty() &&
      std::all_of(p.begin(), p.end(), [](const auto& x) { return x.is_number_integer(); })) {
    std::vector<int32_t> ids;
    for (const auto& x : p) {
      const auto id = x.get<int64_t>();
      if (id < 0 || id >= vocab_size) {
        bad("prompt",
            fmt::format("prompt token id {} is outside the vocabulary [0, {})", id, vocab_size));
      }
      ids.push_back(static_cast<int32_t>(id));
    }
    return ids;
  }
  if (p.is_array() && p.size() > 1 && p[0].is_string()) {
    bad("prompt",
        fmt::format("prompt has {} strings; btx serve takes one prompt per request", p.size()));
  }
  bad("prompt", fmt::format("prompt must be a string, a one-string array or an array of token "
                            "ids, got {}",
                            shown(p)));
}

}  // namespace

CompletionRequest parse_completion_request(const std::string& body, const Tokenizer& tok,
                                           const ServedModel& model, const Limits& limits,
                                           uint64_t default_seed) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const nlohmann::json::parse_error& e) {
    bad("", fmt::format("the request body is not valid JSON ({})", e.what()));
  }
  if (!j.is_object())
    bad("", fmt::format("the request body must be a JSON object, got {}", shown(j)));
  const auto& known = known_fields();
  for (const auto& [key, value] : j.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      bad(key, fmt::format("unknown field '{}' (known: {})", key, fmt::join(known, ", ")));
    }
  }
  const Fields f(j);
  if (f.has("model")) {
    const auto& m = f.at("model");
    if (!m.is_string() || m.get<std::string>() != model.id) {
      throw RequestError(
          404, kInvalid, "model",
          fmt::format("model {} is not served here; this server serves '{}'", shown(m), model.id));
    }
  }
  f.only_default("n", f.has("n") && f.at("n") == 1, "one completion per request: n = 1");
  f.only_default("best_of", f.has("best_of") && f.at("best_of") == 1, "only best_of = 1");
  f.only_default("echo", f.has("echo") && f.at("echo") == false, "only echo = false");
  f.only_default("logprobs", f.has("logprobs") && f.at("logprobs") == 0, "no logprobs");
  f.only_default("suffix", f.has("suffix") && f.at("suffix") == "", "no suffix");
  for (const char* k : {"presence_penalty", "frequency_penalty"}) {
    f.only_default(k, f.has(k) && f.at(k).is_number() && f.at(k).get<double>() == 0,
                   "no penalties: 0 only");
  }
  f.only_default("logit_bias", f.has("logit_bias") && f.at("logit_bias").empty(), "no logit bias");
  if (f.has("user") && !f.at("user").is_string()) {
    bad("user", fmt::format("user must be a string, got {}", shown(f.at("user"))));
  }

  CompletionRequest r;
  if (!j.contains("prompt")) bad("prompt", "prompt is required");
  r.prompt = read_prompt(j.at("prompt"), tok, model.vocab_size);
  if (r.prompt.empty()) bad("prompt", "prompt is empty (it must have at least one token)");
  if (static_cast<int64_t>(r.prompt.size()) >= model.context) {
    throw RequestError(400, kInvalid, "prompt",
                       fmt::format("the prompt has {} tokens but the model's context is {} (it "
                                   "must leave room for at least one new token)",
                                   r.prompt.size(), model.context));
  }
  auto& o = r.options;
  o.max_tokens = f.integer("max_tokens", 16, 0, std::numeric_limits<int64_t>::max());
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
  return r;
}

nlohmann::json error_body(const std::string& message, const std::string& type,
                          const std::string& param) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
            {"code", nullptr}}}};
}

std::string openai_finish_reason(const std::string& reason) {
  return reason == "eos" ? "stop" : reason;
}

nlohmann::json usage(size_t prompt_tokens, size_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

nlohmann::json completion_response(const CompletionIds& ids, const GenerateResult& r,
                                   size_t prompt_tokens, const nlohmann::json& state) {
  nlohmann::json out = {{"id", ids.id},
                        {"object", "text_completion"},
                        {"created", ids.created},
                        {"model", ids.model},
                        {"choices",
                         {{{"text", r.text},
                           {"index", 0},
                           {"logprobs", nullptr},
                           {"finish_reason", openai_finish_reason(r.finish_reason)}}}},
                        {"usage", usage(prompt_tokens, r.tokens.size())}};
  if (!state.is_null()) out["btx"] = state;
  return out;
}

nlohmann::json completion_chunk(const CompletionIds& ids, const std::string& text,
                                const nlohmann::json& finish_reason) {
  return {
      {"id", ids.id},
      {"object", "text_completion"},
      {"created", ids.created},
      {"model", ids.model},
      {"choices",
       {{{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason}}}}};
}

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string sse_event(const nlohmann::json& data) {
  return "data: " + dump_json(data) + "\n\n";
}

}  // namespace btx::serve
