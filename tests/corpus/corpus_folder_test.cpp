// Any folder with one text file or sub-folder per domain is a corpus (corpus.h).
#include <gtest/gtest.h>

#include "btx/corpus/corpus.h"
#include "btx/util/error.h"
#include "test_util.h"

namespace btx {
namespace {

using testing::error_of;

TEST(IsText, Utf8WithoutNul) {
  EXPECT_TRUE(is_text("plain ascii\n"));
  EXPECT_TRUE(is_text("caf\xC3\xA9 \xE2\x80\x94 \xF0\x9F\x98\x80"));
  EXPECT_FALSE(is_text(std::string("a\0b", 3)));
  EXPECT_FALSE(is_text("latin-1 caf\xE9"));
  EXPECT_FALSE(is_text("truncated \xE2\x80"));
  // Strict: overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
  EXPECT_FALSE(is_text("overlong \xC0\x80"));
  EXPECT_FALSE(is_text("surrogate \xED\xA0\x80"));
  EXPECT_FALSE(is_text("past U+10FFFF \xF5\x80\x80\x80"));
}

TEST(ListCorpus, FilesAndSubFolders) {
  testing::TempDir dir;
  testing::write_text(dir / "scripture.txt", "In the beginning\n");
  testing::write_text(dir / "code" / "b.py", "print(2)\n");
  testing::write_text(dir / "code" / "a" / "a.py", "print(1)\n");
  testing::write_text(dir / "code" / ".hidden", "\x01\x02\xFF");
  testing::write_text(dir / "manifest.json", "{}");
  testing::write_text(dir / ".cache" / "x.txt", "ignored");
  testing::write_text(dir / "notes.md", "not a domain");
  const auto domains = list_corpus(dir.path());
  ASSERT_EQ(domains.size(), 2u);
  EXPECT_EQ(domains[0].name, "code");
  ASSERT_EQ(domains[0].files.size(), 2u);
  EXPECT_EQ(domains[0].files[0].filename(), "a.py");  // sorted by path: a/a.py before b.py
  EXPECT_EQ(domains[0].bytes, 18u);
  EXPECT_EQ(domains[1].name, "scripture");
  EXPECT_EQ(domains[1].bytes, 17u);
}

TEST(ListCorpus, ErrorsNameTheCulprit) {
  testing::TempDir dir;
  EXPECT_NE(error_of([&] { list_corpus(dir / "missing"); }).find("does not exist"),
            std::string::npos);
  EXPECT_NE(error_of([&] { list_corpus(dir.path()); }).find("has no domains"), std::string::npos);

  testing::write_text(dir / "empty.txt", "");
  EXPECT_NE(error_of([&] { list_corpus(dir.path()); }).find("'empty'"), std::string::npos);
  fs::remove(dir / "empty.txt");

  fs::create_directories(dir / "hollow");
  EXPECT_NE(error_of([&] { list_corpus(dir.path()); }).find("'hollow'"), std::string::npos);
  fs::remove(dir / "hollow");

  testing::write_text(dir / "bin.txt", std::string("ELF\0\x01\x02", 6));
  const std::string msg = error_of([&] { list_corpus(dir.path()); });
  EXPECT_NE(msg.find("bin.txt"), std::string::npos) << msg;
  EXPECT_NE(msg.find("byte 3 is NUL"), std::string::npos) << msg;
  fs::remove(dir / "bin.txt");

  // A lead byte of an overlong form, after 9 good bytes: the file and the offset are named.
  testing::write_text(dir / "old.txt", "good text\xC0\x80 more");
  const std::string overlong = error_of([&] { list_corpus(dir.path()); });
  EXPECT_NE(overlong.find("old.txt is not UTF-8 text: byte 9 is an overlong encoding (C0 80"),
            std::string::npos)
      << overlong;
}

TEST(SelectDomains, KeepsOrderAndRejectsUnknown) {
  testing::TempDir dir;
  testing::write_text(dir / "a.txt", "a\n");
  testing::write_text(dir / "b.txt", "b\n");
  const auto all = list_corpus(dir.path());
  EXPECT_EQ(select_domains(all, {}, dir.path()).size(), 2u);
  const auto sel = select_domains(all, {"b", "a"}, dir.path());
  ASSERT_EQ(sel.size(), 2u);
  EXPECT_EQ(sel[0].name, "b");
  const std::string msg = error_of([&] { select_domains(all, {"c"}, dir.path()); });
  EXPECT_NE(msg.find("'c'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("a, b"), std::string::npos) << msg;
}

}  // namespace
}  // namespace btx
