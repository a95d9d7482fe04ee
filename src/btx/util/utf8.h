// UTF-8 as RFC 3629 defines it, for the code that reads text byte by byte (the tokenizers, the
// Jinja engine).
#pragma once

#include <cstddef>
#include <string_view>

namespace btx {

// Length of the well-formed UTF-8 character at s[i] (no overlong forms, no surrogates, at most
// U+10FFFF), or 0 when the byte there does not start one.
inline size_t utf8_char_len(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const size_t left = s.size() - i;
  const unsigned c = b(0);
  if (c < 0x80) return 1;
  const auto cont = [&](size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if ((c == 0xE0 && b(1) < 0xA0) || (c == 0xED && b(1) > 0x9F)) return 0;  // overlong, UTF-16
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if ((c == 0xF0 && b(1) < 0x90) || (c == 0xF4 && b(1) > 0x8F)) return 0;  // overlong, >10FFFF
    return 4;
  }
  return 0;
}

}  // namespace btx
