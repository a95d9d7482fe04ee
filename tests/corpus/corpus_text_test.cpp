// Byte repair, document layout and the small format parsers of corpus_text.h.
#include "btx/corpus/corpus_text.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include "btx/corpus/corpus.h"
#include "btx/util/error.h"
#include "test_util.h"

namespace btx {
namespace {

TEST(SplitLines, FinalNewlineStartsNoLine) {
  using V = std::vector<std::string_view>;
  EXPECT_EQ(split_lines("a\n\nb\n"), (V{"a", "", "b"}));
  EXPECT_EQ(split_lines("a\nb"), (V{"a", "b"}));
  EXPECT_EQ(split_lines(""), V{});
}

TEST(CleanText, DropsInvalidBytesAndControls) {
  // cp1252 quotes (0x93/0x94), an overlong '/', a surrogate, a truncated sequence, NUL, CR.
  std::string raw =
      "\xEF\xBB\xBF"
      "a\x93quoted\x94 \xC0\xAF"
      "\xED\xA0\x80"
      "caf\xC3\xA9\r\n";
  raw += std::string("\0x\xE2\x82", 4);
  const std::string clean = to_clean_text(raw);
  EXPECT_EQ(clean, "aquoted café\nx");
  EXPECT_TRUE(is_text(clean));
}

TEST(CleanText, ResolvesOverstrikes) {
  EXPECT_EQ(to_clean_text("B\bBo\bol\bld _\bu_\bn"), "Bold un");
  EXPECT_EQ(to_clean_text("\xC3\xA9\b_"), "_");  // a multi-byte character is overstruck whole
  EXPECT_EQ(to_clean_text("a\n\bb"), "a\nb");    // never across a line
}

TEST(Normalize, ProseCollapsesBlankLinesCodeKeepsThem) {
  const std::string doc = "\n\n  title  \n\n\n\ntext\t\n \nmore\n\n";
  EXPECT_EQ(normalize_document(doc, true), "  title\n\ntext\n\nmore");
  EXPECT_EQ(normalize_document(doc, false), "  title\n\n\n\ntext\n\nmore");
  EXPECT_EQ(normalize_document(" \n\t\n", true), "");
}

TEST(DomainTextBuilderTest, SeparatesDocumentsByOneBlankLine) {
  DomainTextBuilder t;
  t.add("first\n\n\n");
  t.add("   \n");  // empty: skipped
  t.add("second\r\n");
  EXPECT_EQ(t.documents(), 2u);
  EXPECT_EQ(std::move(t).finish(), "first\n\nsecond\n");
  EXPECT_EQ(DomainTextBuilder().finish(), "");
}

TEST(ReadGzip, CompressedAndPlain) {
  testing::TempDir dir;
  gzFile f = gzopen((dir / "a.gz").c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzputs(f, "hello gzip\n");
  gzclose(f);
  EXPECT_EQ(read_gzip(dir / "a.gz"), "hello gzip\n");
  testing::write_text(dir / "plain", "as is\n");
  EXPECT_EQ(read_gzip(dir / "plain"), "as is\n");
  EXPECT_THROW(read_gzip(dir / "missing.gz"), Error);
}

TEST(Fortunes, SplitOnPercentLines) {
  const auto f = split_fortunes("one\nline\n%\n\n%\ntwo 100%\n%\n");
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0], "one\nline\n");
  EXPECT_EQ(f[1], "two 100%\n");
}

TEST(CLicence, DropsLicenceKeepsDescription) {
  const std::string src =
      "/* Malloc implementation for multiple threads.\n"
      "   Copyright (C) 2001-2022 Free Software Foundation, Inc.\n"
      "   This file is part of the GNU C Library.\n"
      "   ... GNU Lesser General Public License ...  */\n"
      "\n"
      "#include <stdbool.h>\n";
  EXPECT_EQ(strip_c_licence_comment(src),
            "/* Malloc implementation for multiple threads.  */\n\n#include <stdbool.h>\n");
  EXPECT_EQ(strip_c_licence_comment("/* Copyright (C) 1991 FSF.\n   GPL */\nint x;\n"), "int x;\n");
  const std::string plain = "/* Just a comment.  */\nint y;\n";
  EXPECT_EQ(strip_c_licence_comment(plain), plain);
  EXPECT_EQ(strip_c_licence_comment("int z;\n"), "int z;\n");
}

TEST(SoftwareLicense, DataSectionWithTemplates) {
  const std::string pm =
      "package Software::License::X;\n"
      "__DATA__\n"
      "__NOTICE__\n"
      "This is the notice.\n"
      "__LICENSE__\n"
      "Copyright (c) {{$self->year}} by {{$self->holder}}\n"
      "--- {{ $self->_gpl->name }} ---\n"
      "{{$self->_gpl->fulltext}}\n"
      "{{ if ($self->clause) { $OUT = <<'END_CLAUSE';\n"
      "8. Optional clause.\n"
      "\n"
      "END_CLAUSE\n"
      "} else { return '' }\n"
      "}}9. The end.\n";
  EXPECT_EQ(software_license_text(pm),
            "Copyright (c) <year> by the copyright holder\n"
            "8. Optional clause.\n"
            "\n"
            "9. The end.\n");
  EXPECT_EQ(software_license_text("package Foo;\n1;\n"), "");
}

}  // namespace
}  // namespace btx
