// The tokenizer.json reader (data/hf_tokenizer.h) on hostile files: a file it accepts must
// encode any text to ids in range and decode them; anything else must be btx's own error naming
// the file.
#include <cstdlib>

#include "btx/data/tokenizer.h"
#include "btx/util/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const btx::Tokenizer tok =
        btx::Tokenizer::load(btx::fuzz::as_file(data, size, "tokenizer.json"));
    const std::string text =
        "def f(x):\n    return x  # caf\xc3\xa9 e\xcc\x81 <|endoftext|> 123 \xf0\x9f\x8e\x89 \xff";
    const auto ids = tok.encode(text);
    for (const int32_t id : ids) {
      if (id < 0 || id >= tok.vocab_size()) std::abort();
    }
    tok.decode(ids);
  } catch (const btx::Error&) {
  }
  return 0;
}
