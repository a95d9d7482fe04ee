#include "btx/util/utf8.h"

#include <fmt/format.h>

#include <cstdint>

#include "btx/util/error.h"

namespace btx {

size_t utf8_invalid_at(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // ASCII runs, eight bytes at a time: most text is mostly ASCII.
    while (i + 8 <= n) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    const size_t len = utf8_char_len(s, i);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

std::string utf8_problem(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned c = b(0);
  // The bytes at fault: the lead byte and the continuation bytes that follow it (at most 4).
  size_t shown = 1;
  while (shown < 4 && i + shown < s.size() && (b(shown) & 0xC0) == 0x80) ++shown;
  std::string hex;
  for (size_t k = 0; k < shown; ++k) hex += fmt::format("{}{:02X}", k ? " " : "", b(k));
  const size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
  if (c >= 0x80 && c <= 0xBF) return fmt::format("a continuation byte with no lead byte ({})", hex);
  if (c >= 0xF8) return fmt::format("a byte that never occurs in UTF-8 ({})", hex);
  if (c >= 0xF5) return fmt::format("a code point above U+10FFFF ({})", hex);
  if (c == 0xC0 || c == 0xC1) {
    return fmt::format(
        "an overlong encoding ({}: a character written with more bytes than it "
        "needs)",
        hex);
  }
  if (shown < want) {
    return i + shown == s.size()
               ? fmt::format("a character cut off by the end ({}: {} bytes of {})", hex, shown,
                             want)
               : fmt::format("a character cut short ({}: {} bytes of {})", hex, shown, want);
  }
  if ((c == 0xE0 && b(1) < 0xA0) || (c == 0xF0 && b(1) < 0x90)) {
    return fmt::format(
        "an overlong encoding ({}: a character written with more bytes than it "
        "needs)",
        hex);
  }
  if (c == 0xED && b(1) > 0x9F) {
    return fmt::format("a UTF-16 surrogate ({}: U+D800..U+DFFF are not characters)", hex);
  }
  if (c == 0xF4 && b(1) > 0x8F) return fmt::format("a code point above U+10FFFF ({})", hex);
  return fmt::format("not a UTF-8 character ({})", hex);  // not reached for invalid input
}

void check_utf8(std::string_view s, std::string_view what) {
  const size_t at = utf8_invalid_at(s);
  if (at == std::string_view::npos) return;
  fail("{} is not valid UTF-8: byte {} is {}", what, at, utf8_problem(s, at));
}

}  // namespace btx
