// A run config (TOML) on hostile text: parsed, validated, written back and parsed again, which
// must give the same config.
#include <cstdio>
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
  const std::string written = btx::run_config_to_toml(c);
  const btx::RunConfig back = btx::parse_run_config(written, "written.toml");
  const auto keys = btx::differing_keys(c, back);
  if (!keys.empty()) {  // the written config must read back as the same config
    std::fprintf(stderr, "written config reads back differently: %s\n", keys.front().c_str());
    std::abort();
  }
  return 0;
}
