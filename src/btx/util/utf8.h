// UTF-8 as RFC 3629 defines it: one strict validator (no overlong forms, no UTF-16 surrogates,
// nothing above U+10FFFF) for every reader of outside text (corpus files, request bodies,
// tokenizer files and pieces), and the character length the code that reads text byte by byte
// uses (the tokenizers, the Jinja engine).
#pragma once

#include <cstddef>
#include <string>
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

// The offset of the first byte of `s` that does not start a well-formed character, or npos when
// all of `s` is well-formed UTF-8 (NUL included: it is U+0000).
size_t utf8_invalid_at(std::string_view s);

// What is wrong at s[i] (an offset utf8_invalid_at returned), for a message: e.g. "an overlong
// encoding (C0 80)", "a UTF-16 surrogate (ED A0 80)", "a code point above U+10FFFF (F5 80 80 80)".
std::string utf8_problem(std::string_view s, size_t i);

// Throws btx::Error when `s` is not well-formed UTF-8: "{what} is not valid UTF-8: byte {offset}
// is {problem}". `what` names the source (a file's path, "the request body").
void check_utf8(std::string_view s, std::string_view what);

}  // namespace btx
