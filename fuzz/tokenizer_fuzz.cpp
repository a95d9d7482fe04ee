// The tokenizer model reader (btx's own sentencepiece protobuf reader) on hostile files; a model
// it accepts must encode and decode any text, and decode(encode(s)) == s for its byte-fallback
// models.
#include <cstdlib>

#include "btx/data/tokenizer.h"
#include "btx/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const btx::Tokenizer tok = btx::Tokenizer::from_bytes(std::move(bytes), "fuzz.model");
    const std::string text = "def f(x):\n    return x  # caf\xc3\xa9 \xe2\x96\x81 \xff";
    const auto ids = tok.encode(text);
    for (const int32_t id : ids) {
      if (id < 0 || id >= tok.vocab_size()) std::abort();
    }
    tok.decode(ids);
  } catch (const btx::Error&) {
  }
  return 0;
}
