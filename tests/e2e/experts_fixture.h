// The fixture of the experts' end-to-end tests: one seeded run (the seed takes a few seconds),
// copied fresh for each test.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "btx/run/run_dir.h"
#include "e2e/e2e_util.h"
#include "e2e/tiny_corpus.h"

namespace btx {

// One seeded run shared by the tests of this file (the seed takes a few seconds).
class ExpertsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("btx-experts");
    auto corpus = testing::make_tiny_corpus(dir_->path() / "corpus", 80'000);
    testing::write_text(dir_->path() / "run.toml", testing::tiny_run_config(corpus, 40, 30));
    auto r = testing::run_btx("seed --config " + (dir_->path() / "run.toml").string() + " --run " +
                              (dir_->path() / "seeded").string());
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }
  // A fresh copy of the seeded run, so each test starts from the same state.
  RunDir fresh_run(const std::string& name) {
    const fs::path to = dir_->path() / name;
    fs::copy(dir_->path() / "seeded", to, fs::copy_options::recursive);
    return RunDir{to};
  }
  static inline testing::TempDir* dir_ = nullptr;
};

}  // namespace btx
