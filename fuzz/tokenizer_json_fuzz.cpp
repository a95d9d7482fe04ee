// The tokenizer.json reader (data/hf_tokenizer.h) on hostile files: a file it accepts must
// encode any text to ids in range and decode them; anything else must be btx's own error naming
// the file.
#include "btx/data/tokenizer.h"
#include "btx/util/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    btx::fuzz::check_encodes(
        btx::Tokenizer::load(btx::fuzz::as_file(data, size, "tokenizer.json")));
  } catch (const btx::Error&) {
  }
  return 0;
}
