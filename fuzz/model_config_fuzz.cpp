// A checkpoint's config.json (Hugging Face keys) on hostile text: read as btx reads the file,
// then validated into a ModelConfig.
#include "btx/model/config.h"
#include "btx/util/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = btx::fuzz::as_file(data, size, "config.json");
  try {
    const btx::ModelConfig c =
        btx::model_config_from_json(btx::read_json_file(path), "config.json");
    btx::model_config_to_json(c);
  } catch (const btx::Error&) {
  }
  return 0;
}
