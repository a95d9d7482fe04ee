#include "btx/util/fs.h"

#include <gtest/gtest.h>

#include "btx/util/error.h"
#include "test_util.h"

namespace btx {
namespace {

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(WriteFileAtomic, WritesAndReplaces) {
  testing::TempDir dir;
  const auto p = dir / "a.txt";
  write_file_atomic(p, "one");
  EXPECT_EQ(read_file(p), "one");
  write_file_atomic(p, "two");
  EXPECT_EQ(read_file(p), "two");
  EXPECT_EQ(sha256_file(p), sha256_hex("two"));
  // No temporary files left behind.
  int n = 0;
  for (auto& e : fs::directory_iterator(dir.path())) n += e.is_regular_file();
  EXPECT_EQ(n, 1);
}

TEST(WriteDirAtomic, FailureLeavesOldFolderIntact) {
  testing::TempDir dir;
  const auto d = dir / "ckpt";
  write_dir_atomic(d, [](const fs::path& tmp) { write_file_atomic(tmp / "x", "good"); });
  EXPECT_THROW(write_dir_atomic(d,
                                [](const fs::path& tmp) {
                                  write_file_atomic(tmp / "x", "half");
                                  fail("simulated crash in {}", tmp.string());
                                }),
               Error);
  EXPECT_EQ(read_file(d / "x"), "good");
  int n = 0;
  for (auto& e : fs::directory_iterator(dir.path())) n += 1 + 0 * e.is_directory();
  EXPECT_EQ(n, 1) << "temporary folder left behind";
  write_dir_atomic(d, [](const fs::path& tmp) { write_file_atomic(tmp / "x", "new"); });
  EXPECT_EQ(read_file(d / "x"), "new");
}

TEST(WriteDirAtomic, RecoversASwapCutShortByACrash) {
  testing::TempDir dir;
  const auto d = dir / "ckpt";
  write_dir_atomic(d, [](const fs::path& tmp) { write_file_atomic(tmp / "x", "good"); });
  // A crash between "move the old folder aside" and "move the new one in".
  fs::rename(d, dir / "ckpt.old.tmp-123-0");
  EXPECT_FALSE(recover_dir(dir / "other"));
  EXPECT_TRUE(recover_dir(d));
  EXPECT_EQ(read_file(d / "x"), "good");
  EXPECT_FALSE(recover_dir(d));  // nothing to do when the folder is there
  // write_dir_atomic recovers first, then replaces as usual, leaving no stray folder.
  fs::rename(d, dir / "ckpt.old.tmp-123-1");
  write_dir_atomic(d, [](const fs::path& tmp) { write_file_atomic(tmp / "x", "new"); });
  EXPECT_EQ(read_file(d / "x"), "new");
  int n = 0;
  for (auto& e : fs::directory_iterator(dir.path())) n += 1 + 0 * e.is_directory();
  EXPECT_EQ(n, 1);
}

}  // namespace
TEST(JsonDepth, CountsBracketsOutsideStringsAndReadJsonFileRefusesDeepFiles) {
  EXPECT_EQ(json_nesting_depth("1"), 0u);
  EXPECT_EQ(json_nesting_depth(R"({"a": [1, {"b": []}]})"), 4u);
  EXPECT_EQ(json_nesting_depth(R"({"a": "[[[[\"{{"})"), 1u);  // inside a string, escapes too
  testing::TempDir dir;
  write_file_atomic(dir / "deep.json", std::string(100000, '[') + std::string(100000, ']'));
  EXPECT_NE(testing::error_of([&] {
              read_json_file(dir / "deep.json");
            }).find("deep.json: JSON nested 100000 levels deep; at most 64 are read"),
            std::string::npos);
  write_file_atomic(dir / "ok.json", std::string(64, '[') + std::string(64, ']'));
  EXPECT_TRUE(read_json_file(dir / "ok.json").is_array());
}

}  // namespace btx
