#include "btx/util/fs.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "btx/util/error.h"
#include "test_util.h"

namespace btx {
namespace {

// The pid of a process that has ended (a child that exited at once and was reaped).
long dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  return child;
}

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
  const long gone = dead_pid();
  fs::rename(d, dir / fmt::format("ckpt.old.tmp-{}-0", gone));
  EXPECT_FALSE(recover_dir(dir / "other"));
  EXPECT_TRUE(recover_dir(d));
  EXPECT_EQ(read_file(d / "x"), "good");
  EXPECT_FALSE(recover_dir(d));  // nothing to do when the folder is there
  // write_dir_atomic recovers first, then replaces as usual, leaving no stray folder.
  fs::rename(d, dir / fmt::format("ckpt.old.tmp-{}-1", gone));
  write_dir_atomic(d, [](const fs::path& tmp) { write_file_atomic(tmp / "x", "new"); });
  EXPECT_EQ(read_file(d / "x"), "new");
  int n = 0;
  for (auto& e : fs::directory_iterator(dir.path())) n += 1 + 0 * e.is_directory();
  EXPECT_EQ(n, 1);
}

// The naming and recovery rule that status, merge, launch and run apply after a crash.
TEST(TidyDir, RestoresTheMovedAsideFolderAndRemovesOnlyDeadProcessesTemporaries) {
  testing::TempDir dir;
  const auto d = dir / "expert";
  const long gone = dead_pid();
  fs::create_directories(dir / fmt::format("expert.old.tmp-{}-0", gone));
  write_file_atomic(dir / fmt::format("expert.old.tmp-{}-0", gone) / "x", "good");
  fs::create_directories(dir / fmt::format("expert.tmp-{}-1", gone));  // the new one, cut short
  // A swap in progress in a live process (this test's parent) and an unrelated name stay.
  const auto live = dir / fmt::format("expert.tmp-{}-0", ::getppid());
  fs::create_directories(live);
  fs::create_directories(dir / "expert2.tmp-1-0");
  fs::create_directories(dir / "other");

  const auto removed = tidy_dir(d);
  EXPECT_EQ(read_file(d / "x"), "good");
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].filename(), fmt::format("expert.tmp-{}-1", gone));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(dir / "expert2.tmp-1-0"));
  EXPECT_TRUE(tidy_dir(d).empty());  // nothing left to do

  EXPECT_TRUE(is_temp_name("expert.tmp-12-0"));
  EXPECT_TRUE(is_temp_name("expert.old.tmp-12-0"));
  EXPECT_FALSE(is_temp_name("expert"));
  EXPECT_FALSE(is_temp_name("tmp-expert"));
}

// `btx eval --out DIR` once gave a raw filesystem error and left a temporary file behind.
TEST(WriteFileAtomic, AFolderAsTargetIsAnErrorThatLeavesNothing) {
  testing::TempDir dir;
  fs::create_directories(dir / "out");
  try {
    write_file_atomic(dir / "out", "x");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("it is a folder"), std::string::npos) << e.what();
  }
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
