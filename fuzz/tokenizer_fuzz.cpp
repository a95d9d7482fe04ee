// The tokenizer model reader (btx's own sentencepiece protobuf reader) on hostile files: a model
// it accepts must encode any text to ids in range and decode them (fuzz_util.h check_encodes).
#include "btx/data/tokenizer.h"
#include "btx/util/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    btx::fuzz::check_encodes(btx::Tokenizer::from_bytes(std::move(bytes), "fuzz.model"));
  } catch (const btx::Error&) {
  }
  return 0;
}
