// Text helpers (util/text.h): replacing and splitting, by hand.
#include "btx/util/text.h"

#include <gtest/gtest.h>

namespace btx {
namespace {

TEST(Text, ReplaceAllOrTheFirstCount) {
  EXPECT_EQ(replace_text("a-b-c", "-", "+"), "a+b+c");
  EXPECT_EQ(replace_text("a-b-c", "-", "+", 1), "a+b-c");
  EXPECT_EQ(replace_text("aaa", "aa", "b"), "ba");
  EXPECT_EQ(replace_text("abc", "", "x"), "abc");
}

TEST(Text, SplitKeepsTheNonEmptyItems) {
  EXPECT_EQ(split_text("a,b=c,d", ','), (std::vector<std::string>{"a", "b=c", "d"}));
  EXPECT_EQ(split_text(",a,,b,", ','), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(split_text("", ',').empty());
  EXPECT_EQ(split_text("one", ','), (std::vector<std::string>{"one"}));
}

}  // namespace
}  // namespace btx
