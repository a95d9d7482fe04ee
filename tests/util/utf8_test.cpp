#include "btx/util/utf8.h"

#include <gtest/gtest.h>
#include <iconv.h>

#include <string>
#include <vector>

#include "btx/util/error.h"
#include "test_util.h"

namespace btx {
namespace {

// glibc's iconv, an independent strict decoder: where it stops, or npos when it decodes all.
size_t iconv_invalid_at(const std::string& s) {
  static const iconv_t cd = iconv_open("UTF-32LE", "UTF-8");
  iconv(cd, nullptr, nullptr, nullptr, nullptr);
  std::vector<char> out(4 * s.size() + 16);
  char* in = const_cast<char*>(s.data());
  size_t in_left = s.size();
  char* o = out.data();
  size_t out_left = out.size();
  if (iconv(cd, &in, &in_left, &o, &out_left) != static_cast<size_t>(-1)) return std::string::npos;
  return static_cast<size_t>(in - s.data());
}

std::string message_of(std::string_view s) {
  return testing::error_of([&] { check_utf8(s, "f.txt"); });
}

TEST(Utf8Test, TheIssuesCasesAreRefusedWithTheirOffsetAndReason) {
  EXPECT_EQ(utf8_invalid_at("caf\xC3\xA9 \xE2\x80\x94 \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF"),
            std::string::npos);
  EXPECT_EQ(utf8_invalid_at(std::string("a\0b", 3)), std::string::npos);  // U+0000 is UTF-8
  EXPECT_EQ(message_of("ab\xC0\x80"),
            "f.txt is not valid UTF-8: byte 2 is an overlong encoding (C0 80: a character "
            "written with more bytes than it needs)");
  EXPECT_EQ(message_of("x\xE0\x80\x80"),
            "f.txt is not valid UTF-8: byte 1 is an overlong encoding (E0 80 80: a character "
            "written with more bytes than it needs)");
  EXPECT_EQ(message_of("\xED\xA0\x80"),
            "f.txt is not valid UTF-8: byte 0 is a UTF-16 surrogate (ED A0 80: U+D800..U+DFFF are "
            "not characters)");
  EXPECT_EQ(message_of("123\xF5\x80\x80\x80"),
            "f.txt is not valid UTF-8: byte 3 is a code point above U+10FFFF (F5 80 80 80)");
  EXPECT_EQ(message_of("\xF4\x90\x80\x80"),
            "f.txt is not valid UTF-8: byte 0 is a code point above U+10FFFF (F4 90 80 80)");
  EXPECT_EQ(message_of("ok \xFF"),
            "f.txt is not valid UTF-8: byte 3 is a byte that never occurs in UTF-8 (FF)");
  EXPECT_EQ(message_of("\x80"),
            "f.txt is not valid UTF-8: byte 0 is a continuation byte with no lead byte (80)");
  EXPECT_EQ(message_of("end \xE2\x80"),
            "f.txt is not valid UTF-8: byte 4 is a character cut off by the end (E2 80: 2 bytes "
            "of 3)");
  EXPECT_EQ(message_of("\xE2\x80z"),
            "f.txt is not valid UTF-8: byte 0 is a character cut short (E2 80: 2 bytes of 3)");
  EXPECT_EQ(message_of("fine"), "");
  // Past the eight-byte ASCII stride: the offset is still the byte's own.
  EXPECT_EQ(utf8_invalid_at("0123456789abcdef\xC1\xBF"), 16u);
}

// Every string of one and two bytes, and every three- and four-byte string from a set of bytes
// that covers each boundary, agree with iconv on validity and the offset of the first bad byte.
TEST(Utf8Test, AgreesWithIconvAtEveryBoundary) {
  for (int a = 0; a < 256; ++a) {
    for (int b = -1; b < 256; ++b) {
      std::string s(1, static_cast<char>(a));
      if (b >= 0) s += static_cast<char>(b);
      ASSERT_EQ(utf8_invalid_at(s), iconv_invalid_at(s)) << std::hex << a << " " << b;
    }
  }
  const std::vector<int> edges = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0,
                                  0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF,
                                  0xF0, 0xF4, 0xF5, 0xF7, 0xF8, 0xFE, 0xFF};
  for (int a = 0xC0; a < 256; ++a) {
    for (int b : edges) {
      for (int c : edges) {
        for (int d : {-1, 0x41, 0x80, 0xBF, 0xC0}) {
          std::string s = {static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)};
          if (d >= 0) s += static_cast<char>(d);
          ASSERT_EQ(utf8_invalid_at(s), iconv_invalid_at(s))
              << std::hex << a << " " << b << " " << c << " " << d;
          if (utf8_invalid_at(s) != std::string::npos) {
            EXPECT_FALSE(message_of(s).empty());
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace btx
