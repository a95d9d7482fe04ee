// The OpenAI request parser of btx serve on hostile bodies, both endpoints, with a real tokenizer
// (BTX_FUZZ_TOKENIZER, set by scripts/fuzz.sh): a bad body must be a RequestError (a 4xx), never
// anything else.
#include <cstdlib>
#include <memory>

#include "btx/serve/completions.h"

namespace {
std::unique_ptr<btx::Tokenizer> tok;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("BTX_FUZZ_TOKENIZER");
  if (path == nullptr) std::abort();
  tok = std::make_unique<btx::Tokenizer>(btx::Tokenizer::load(path));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  const btx::serve::ServedModel model{"tiny", 128, tok->vocab_size()};
  const btx::serve::Limits limits;
  for (const bool chat : {false, true}) {
    try {
      if (chat) {
        btx::serve::parse_chat_request(body, *tok, btx::builtin_chat_template("chatml"), model,
                                       limits, 1);
      } else {
        btx::serve::parse_completion_request(body, *tok, model, limits, 1);
      }
    } catch (const btx::serve::RequestError&) {
    }
  }
  return 0;
}
