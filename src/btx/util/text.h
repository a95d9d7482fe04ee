// Text helpers shared by the readers of outside formats (tokenizer.json, Jinja templates).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace btx {

// `s` with its first `count` occurrences of `from` (all of them when `count` is negative)
// replaced by `to`, left to right; an empty `from` replaces nothing.
inline std::string replace_text(const std::string& s, const std::string& from,
                                const std::string& to, int64_t count = -1) {
  if (from.empty()) return s;
  std::string out;
  size_t at = 0;
  for (size_t hit; count != 0 && (hit = s.find(from, at)) != std::string::npos; --count) {
    out.append(s, at, hit - at);
    out += to;
    at = hit + from.size();
  }
  out.append(s, at, std::string::npos);
  return out;
}

// The non-empty items of `s` between `sep`s ("a,,b" -> {"a", "b"}; "" -> {}).
inline std::vector<std::string> split_text(const std::string& s, char sep) {
  std::vector<std::string> out;
  for (size_t at = 0; at <= s.size();) {
    size_t end = s.find(sep, at);
    if (end == std::string::npos) end = s.size();
    if (end > at) out.push_back(s.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

}  // namespace btx
