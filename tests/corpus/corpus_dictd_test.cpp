// dictd index decoding, entry cutting and GCIDE clean-up on hand-written inputs.
#include <gtest/gtest.h>
#include <zlib.h>

#include "btx/corpus/corpus_text.h"
#include "btx/util/error.h"
#include "test_util.h"

namespace btx {
namespace {

TEST(DictdB64, HandComputedNumbers) {
  EXPECT_EQ(dictd_b64_decode("A"), 0u);
  EXPECT_EQ(dictd_b64_decode("/"), 63u);
  EXPECT_EQ(dictd_b64_decode("BA"), 64u);
  EXPECT_EQ(dictd_b64_decode("5I"), 57u * 64 + 8);   // 3656: gcide's first real entry
  EXPECT_EQ(dictd_b64_decode("Kj"), 10u * 64 + 35);  // 675
  EXPECT_EQ(dictd_b64_decode("uk"), 46u * 64 + 36);  // 2980
  EXPECT_EQ(dictd_b64_decode("BAA"), 4096u);
  EXPECT_THROW(dictd_b64_decode("A=B"), Error);
  EXPECT_THROW(dictd_b64_decode(""), Error);
}

TEST(DictdRanges, CutsMetadataSortsAndMerges) {
  // Offsets: 00-database-info 0+10, 00-gcide-url 10+5 (same range as 00-database-url),
  // then real entries out of order, a duplicate headword range and one inside another.
  const std::string index =
      "00-database-info\tA\tK\n"
      "00-database-url\tK\tF\n"
      "00-gcide-url\tK\tF\n"
      "zebra\tZ\tK\n"    // 25 + 10
      "apple\tP\tK\n"    // 15 + 10
      "Apple\tP\tK\n"    // same entry, other headword
      "appl\tR\tC\n"     // 17 + 2, inside apple's
      "inmeta\tC\tB\n";  // 2 + 1, overlaps 00-database-info
  const auto r = dictd_entry_ranges(index, "test.index");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].offset, 15u);
  EXPECT_EQ(r[0].length, 10u);
  EXPECT_EQ(r[1].offset, 25u);
  EXPECT_EQ(r[1].length, 10u);
}

TEST(DictdRanges, NoDashMetadataNames) {
  const auto r = dictd_entry_ranges("00databaseinfo\tA\tK\nword\tK\tF\n", "devil.index");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].offset, 10u);
}

TEST(DictdRanges, MalformedLineNamesFileAndLine) {
  try {
    dictd_entry_ranges("ok\tA\tB\nbroken line\n", "x.index");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x.index line 2"), std::string::npos) << e.what();
  }
}

TEST(DictdEntries, ReadsGzipDictionary) {
  testing::TempDir dir;
  const std::string data = "META DATA\nfirst entry\nsecond\n";
  gzFile f = gzopen((dir / "t.dict.dz").c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzwrite(f, data.data(), static_cast<unsigned>(data.size()));
  gzclose(f);
  // META DATA\n = 0+10, "first entry\n" = 10+12 (K, M), "second\n" = 22+7 (W, H)
  testing::write_text(dir / "t.index", "00-database-info\tA\tK\nfirst\tK\tM\nsecond\tW\tH\n");
  const auto e = read_dictd_entries(dir / "t.index", dir / "t.dict.dz");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0], "first entry\n");
  EXPECT_EQ(e[1], "second\n");
  testing::write_text(dir / "bad.index", "far\tBAAA\tK\n");
  EXPECT_THROW(read_dictd_entries(dir / "bad.index", dir / "t.dict.dz"), Error);
}

TEST(LinkBraces, StrippedWithWrappedWhitespace) {
  EXPECT_EQ(strip_link_braces("see {foo bar} and {baz}."), "see foo bar and baz.");
  EXPECT_EQ(strip_link_braces("abbreviated {BSOD\n    }.)"), "abbreviated BSOD.)");
  EXPECT_EQ(strip_link_braces("a } b"), "a  b");  // a stray closing brace is just dropped
}

TEST(Gcide, CleansHandWrittenEntry) {
  const std::string entry =
      "Dog \\Dog\\ (d[add]g or d[o^]g), n. [AS. docga.]\n"
      "   1. (Zool.) A quadruped of the genus {Canis}, esp. the\n"
      "      domestic dog ({Canis familiaris}).\n"
      "      [1913 Webster]\n"
      "\n"
      "   2. A mean fellow; a wretch. [Obs.]\n"
      "      [Webster 1913 Suppl. +PJC]\n"
      "\n"
      "   Syn: hound, [ae]on, caf['e]\n"
      "        [WordNet 1.5 +PJC]\n";
  const std::string want =
      "Dog (däg or do\u0306g), n. [AS. docga.]\n"
      "   1. (Zool.) A quadruped of the genus Canis, esp. the\n"
      "      domestic dog (Canis familiaris).\n"
      "\n"
      "   2. A mean fellow; a wretch. [Obs.]\n"
      "\n"
      "   Syn: hound, æon, cafe\u0301\n";
  EXPECT_EQ(clean_gcide_entry(entry), want);
}

TEST(Gcide, HeadwordBlockWrappedOverALine) {
  EXPECT_EQ(clean_gcide_entry("Amber fish \\Am\"ber\nfish`\\ (Zool.) A fish.\n"),
            "Amber fish (Zool.) A fish.\n");
  // A lone backslash, or two far apart, are text.
  EXPECT_EQ(clean_gcide_entry("a \\ b\n"), "a \\ b\n");
}

TEST(Gcide, InlineSourceTagAndCodesInsideLabels) {
  EXPECT_EQ(clean_gcide_entry("a thing. [PJC]\n"), "a thing.\n");
  EXPECT_EQ(clean_gcide_entry("[L. f[=e]lix]\n"), "[L. fe\u0304lix]\n");
  EXPECT_EQ(clean_gcide_entry("[R.] [Colloq.]\n"), "[R.] [Colloq.]\n");
}

}  // namespace
}  // namespace btx
