// The safetensors reader on hostile files: the header is validated whole, then every tensor of
// at most 1 MiB is read.
#include "btx/io/safetensors.h"
#include "btx/util/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = btx::fuzz::as_file(data, size, "model.safetensors");
  try {
    const btx::SafetensorsReader reader(path);
    for (const auto& [name, info] : reader.tensors()) {
      if (info.end - info.begin <= (1u << 20)) reader.read(name);
    }
  } catch (const btx::Error&) {
  }
  return 0;
}
