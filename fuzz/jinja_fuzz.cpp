// The Jinja engine (data/jinja.h) on hostile templates: parsing and rendering must end in a text
// or btx's own error (an unimplemented construct, a type error, raise_exception), never a crash,
// a hang or another exception.
#include <nlohmann/json.hpp>

#include "btx/data/jinja.h"
#include "btx/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::ordered_json context = nlohmann::ordered_json::parse(R"({
      "messages": [{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "Hi <think>x</think>"},
                   {"role": "assistant", "content": "Hello", "tool_calls": [{"function":
                     {"name": "f", "arguments": {"a": [1, 2.5, null, true]}}}]}],
      "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>",
      "tools": [{"type": "function", "function": {"name": "f"}}]})");
  try {
    const auto t = btx::jinja::Template::parse(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz.jinja");
    t.render(context);
  } catch (const btx::Error&) {
  }
  return 0;
}
