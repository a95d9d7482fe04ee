// Our own reader/writer for the safetensors format (https://github.com/huggingface/safetensors):
// 8-byte little-endian header length, a JSON header, then the raw little-endian tensor bytes.
// Every field of a file is validated, so a corrupt or hostile file gives a btx::Error naming the
// file, never a crash or a huge allocation. Not supported: lazy/zero-copy loading, F8/complex/U16+.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace btx {

using TensorMap = std::map<std::string, torch::Tensor>;

struct SafetensorsFile {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;
};

// Writes `tensors` (any device; copied to CPU contiguous) atomically (temp file + rename).
// Tensors are laid out sorted by name; the header is space-padded to a multiple of 8 bytes and
// holds "__metadata__" when `metadata` is non-empty.
void save_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads and validates the whole file; every tensor is an owned CPU tensor.
SafetensorsFile load_safetensors(const std::filesystem::path& path);

// One header entry. begin/end are byte offsets into the data buffer (after the header).
struct TensorInfo {
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

// Reads and validates only the header (names -> dtype, shape, offsets), not the tensor data.
std::map<std::string, TensorInfo> read_safetensors_header(const std::filesystem::path& path);

}  // namespace btx
