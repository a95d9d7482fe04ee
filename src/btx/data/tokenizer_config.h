// tokenizer_config.json, as the tokenizer (hf_tokenizer.cpp) and the chat template
// (chat_template.cpp) read it. Internal to data/.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "btx/util/error.h"

namespace btx {

// The text of the special token `key` ("bos_token", "eos_token"): written as "text" or as
// {"content": "text", ...}; nullopt when the config has none. Another form is an error naming
// `file`.
inline std::optional<std::string> special_token_text(const nlohmann::json& config, const char* key,
                                                     const std::string& file) {
  if (!config.is_object() || !config.contains(key) || config[key].is_null()) return std::nullopt;
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  BTX_CHECK(v.is_object() && v.contains("content") && v["content"].is_string(),
            "{}: {} is {}; expected a token's text or {{\"content\": ...}}", file, key, v.dump());
  return v["content"].get<std::string>();
}

}  // namespace btx
