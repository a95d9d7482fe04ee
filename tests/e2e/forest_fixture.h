// A fixture whose tests share one trained forest (seed 40 steps, 3 experts x 30 steps), built
// once per test suite; each test copies it with fresh_run() and may change its copy. One
// instantiation per suite (ForestTest<MySuite>) so every suite has its own folder.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "btx/run/run_dir.h"
#include "tiny_corpus.h"

namespace btx::testing {

template <typename Suite>
class ForestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("btx-forest");
    const std::string failed = make_trained_forest(dir_->path());
    ASSERT_EQ(failed, "");
  }
  static void TearDownTestSuite() { delete dir_; }
  // A copy of the trained run under `name`.
  static RunDir fresh_run(const std::string& name) {
    const fs::path to = dir_->path() / name;
    fs::copy(dir_->path() / "trained", to, fs::copy_options::recursive);
    return RunDir{to};
  }
  // The shared run itself: for tests that only read it.
  static RunDir trained() { return RunDir{dir_->path() / "trained"}; }
  static TempDir* dir_;
};
template <typename Suite>
TempDir* ForestTest<Suite>::dir_ = nullptr;

}  // namespace btx::testing
