// Chat templates: hand-written renderings of the built-ins, a template file, and bad templates
// and messages refused with the reason. (Their Jinja form is checked against Hugging Face's Jinja
// in tests/e2e/interop_test.cpp.)
#include "btx/data/chat_template.h"

#include <gtest/gtest.h>

#include "btx/util/error.h"
#include "test_util.h"

namespace btx::testing {
namespace {

TEST(ChatTemplateTest, BuiltInsRenderAsWritten) {
  const std::vector<ChatMessage> m = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "2+2?"}};
  EXPECT_EQ(builtin_chat_template("plain").render(m, true),
            "Be brief.\n\nUser: Hi\n\nAssistant: Hello.\n\nUser: 2+2?\n\nAssistant:");
  EXPECT_EQ(builtin_chat_template("plain").render(m, false),
            "Be brief.\n\nUser: Hi\n\nAssistant: Hello.\n\nUser: 2+2?\n\n");
  EXPECT_EQ(builtin_chat_template("chatml").render({{"user", "Hi"}}, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(builtin_chat_template("plain").stop,
            (std::vector<std::string>{"\nUser:", "\nAssistant:"}));
  EXPECT_EQ(load_chat_template("none").jinja(), "");
}

TEST(ChatTemplateTest, FilesLoadAndBadOnesAreNamed) {
  TempDir dir;
  write_text(dir / "t.json",
             R"({"roles": {"user": {"prefix": "Q: ", "suffix": "\n"},
                           "assistant": {"prefix": "A: ", "suffix": "\n"}},
                 "generation_prompt": "A:", "stop": ["\nQ:"]})");
  const ChatTemplate t = load_chat_template((dir / "t.json").string());
  EXPECT_EQ(t.render({{"user", "x"}, {"assistant", "y"}}, true), "Q: x\nA: y\nA:");
  EXPECT_NE(error_of([&] {
              t.render({{"user", "x"}, {"system", "s"}}, false);
            }).find("messages[1].role: unknown role \"system\""),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              load_chat_template("none").render({{"user", "x"}}, true);
            }).find("no chat template"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              load_chat_template("zephyr");
            }).find("chat template 'zephyr': not plain, chatml or none, and no such file"),
            std::string::npos);
  write_text(dir / "bad1.json", R"({"roles": {"user": {"prefix": "Q"}}, "generation_prompt": ""})");
  EXPECT_NE(error_of([&] {
              load_chat_template((dir / "bad1.json").string());
            }).find("roles has no \"assistant\""),
            std::string::npos);
  write_text(dir / "bad2.json",
             R"({"roles": {"user": {}, "assistant": {}}, "generation_prompt": "", "stops": []})");
  EXPECT_NE(error_of([&] {
              load_chat_template((dir / "bad2.json").string());
            }).find("unknown key \"stops\""),
            std::string::npos);
  write_text(dir / "bad3.json",
             R"({"roles": {"user": {"prefix": 3}, "assistant": {}}, "generation_prompt": ""})");
  EXPECT_NE(
      error_of([&] { load_chat_template((dir / "bad3.json").string()); }).find("roles.user.prefix"),
      std::string::npos);
}

}  // namespace
}  // namespace btx::testing
