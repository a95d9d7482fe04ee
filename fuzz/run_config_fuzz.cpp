// A run config (TOML) on hostile text: parsed, validated, written back and parsed again, which
// must give the same config.
#include <cstdlib>

#include "btx/config/run_config.h"
#include "btx/util/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  btx::RunConfig c;
  try {
    c = btx::parse_run_config(text, "fuzz.toml");
  } catch (const btx::Error&) {
    return 0;
  }
  const btx::RunConfig back = btx::parse_run_config(btx::run_config_to_toml(c), "written.toml");
  if (!btx::differing_keys(c, back).empty()) std::abort();  // the written config reads back
  return 0;
}
