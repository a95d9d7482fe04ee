// run_process / check_output: output capture, exit codes, environment isolation, errors.
#include "btx/util/subprocess.h"

#include <gtest/gtest.h>

#include "btx/util/error.h"

namespace btx {
namespace {

TEST(Subprocess, CapturesBothStreamsAndExitCode) {
  const RunResult r = run_process({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
}

TEST(Subprocess, LargeOutputOnBothStreamsDoesNotBlock) {
  const RunResult r = run_process(
      {"sh", "-c", "head -c 300000 /dev/zero | tr '\\0' a; head -c 300000 /dev/zero >&2"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.size(), 300000u);
  EXPECT_EQ(r.err.size(), 300000u);
}

TEST(Subprocess, ArgumentsAreNotShellParsed) {
  EXPECT_EQ(check_output({"printf", "%s|", "a b", "$HOME", "'q'"}, "test"), "a b|$HOME|'q'|");
}

TEST(Subprocess, CleanEnvironmentUnlessInherited) {
  ::setenv("BTX_TEST_VAR", "leak", 1);
  RunOptions o;
  o.env["LC_ALL"] = "C";
  EXPECT_EQ(check_output({"sh", "-c", "echo \"$LC_ALL:$BTX_TEST_VAR\""}, "test", o), "C:\n");
  o.inherit_env = true;
  EXPECT_EQ(check_output({"sh", "-c", "echo \"$LC_ALL:$BTX_TEST_VAR\""}, "test", o), "C:leak\n");
  ::unsetenv("BTX_TEST_VAR");
}

TEST(Subprocess, ErrorsNameTheCommand) {
  try {
    check_output({"sh", "-c", "echo boom >&2; exit 2"}, "domain 'x'");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("domain 'x'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("sh -c 'echo boom >&2; exit 2'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("exit code 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("boom"), std::string::npos) << msg;
  }
  EXPECT_THROW(run_process({"btx-no-such-program-xyz"}), Error);
}

// spm_train's failure lines once ended up after btx's error line: a child's output is one line.
TEST(Subprocess, AChildsMultiLineOutputIsFoldedIntoTheOneLineError) {
  try {
    check_output({"sh", "-c",
                  "printf 'trainer: starting\\n\\n  Vocabulary  size\\ttoo high\\n' >&2; exit 1"},
                 "training tokenizer");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_NE(msg.find(": trainer: starting | Vocabulary size too high"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace btx
