// Our own reader/writer for the safetensors format (https://github.com/huggingface/safetensors):
// 8-byte little-endian header length, a JSON header, then the raw little-endian tensor bytes.
// Every field of a file is validated, so a corrupt or hostile file gives a btx::Error naming the
// file, never a crash or a huge allocation. Reading and writing both stream one tensor at a time
// (SafetensorsReader, save_safetensors_streaming); the whole-file functions are loops over them.
// Not supported: memory-mapped/zero-copy loading, F8/complex/U16+.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace btx {

using TensorMap = std::map<std::string, torch::Tensor>;

struct SafetensorsFile {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;
};

// One header entry. begin/end are byte offsets into the data buffer (after the header).
struct TensorInfo {
  std::string dtype;  // safetensors name: "F32", "BF16", "I64", "BOOL", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
  torch::ScalarType scalar_type() const;  // the torch type of `dtype`
};

// Opens a file and validates its whole header; tensors are then read one at a time, on demand,
// each with pread straight into a CPU tensor. Holds the file open until destroyed.
class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::filesystem::path& path);
  ~SafetensorsReader();
  SafetensorsReader(SafetensorsReader&&) noexcept;
  SafetensorsReader& operator=(SafetensorsReader&&) noexcept;

  const std::filesystem::path& path() const;
  const std::map<std::string, TensorInfo>& tensors() const;  // sorted by name
  const std::map<std::string, std::string>& metadata() const;
  bool contains(const std::string& name) const;
  // The tensor `name`; an unknown name is an error naming the file and the tensor.
  torch::Tensor read(const std::string& name) const;
  // Elements [start, start + out.numel()) of tensor `name`, flattened in row-major order, read
  // into `out` (a contiguous CPU tensor of the tensor's dtype, any shape): lets a caller stream
  // through a large tensor in slices of one reused buffer.
  void read_range(const std::string& name, int64_t start, const torch::Tensor& out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// What a streaming write is told up front about each tensor.
struct TensorSpec {
  torch::ScalarType dtype = torch::kFloat32;
  std::vector<int64_t> shape;
};
using TensorLayout = std::map<std::string, TensorSpec>;

// Writes a safetensors file without holding it in memory: the header (from `layout`) first, then
// `produce(name)` for each name of `layout` in sorted order, each tensor's bytes going straight
// to a temporary sibling file, which is fsynced and renamed onto `path`. A produced tensor (any
// device, any strides) whose dtype or shape differs from the layout is an error naming it. On any
// error, the producer's included, the temporary file is removed and `path` is left untouched.
void save_safetensors_streaming(const std::filesystem::path& path, const TensorLayout& layout,
                                const std::map<std::string, std::string>& metadata,
                                const std::function<torch::Tensor(const std::string&)>& produce);

// Writes `tensors` (any device; copied to CPU contiguous one at a time) atomically, through
// save_safetensors_streaming. Tensors are laid out sorted by name; the header is space-padded to
// a multiple of 8 bytes and holds "__metadata__" when `metadata` is non-empty.
void save_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads and validates the whole file (a loop over SafetensorsReader); every tensor is an owned
// CPU tensor.
SafetensorsFile load_safetensors(const std::filesystem::path& path);

// Reads and validates only the header (names -> dtype, shape, offsets), not the tensor data.
std::map<std::string, TensorInfo> read_safetensors_header(const std::filesystem::path& path);

}  // namespace btx
