// GGUF (version 3), the file format of llama.cpp, Ollama, LM Studio and the tools built on them:
// a header of typed key/value metadata and tensor descriptions, then the tensors' data, each
// aligned to 32 bytes (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md). Written here
// from float tensors in F32, F16, BF16 or Q8_0 (blocks of 32 values: a float16 scale, max|x|/127,
// and 32 int8 values round(x/scale), as ggml's reference quantizer computes them); read back for
// tests and checks, every field validated so a corrupt file is an error naming it.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace btx {

// ggml's tensor types that btx writes.
enum class GgufType : uint32_t { kF32 = 0, kF16 = 1, kQ8_0 = 8, kBF16 = 30 };
const char* gguf_type_name(GgufType t);  // "f32", "f16", "q8_0", "bf16"
inline constexpr int64_t kQ8BlockSize = 32;

// Metadata in the order added; each key once.
class GgufMetadata {
 public:
  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_u64(const std::string& key, uint64_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_strings(const std::string& key, const std::vector<std::string>& v);
  void add_f32s(const std::string& key, const std::vector<float>& v);
  void add_i32s(const std::string& key, const std::vector<int32_t>& v);

  const std::string& bytes() const { return bytes_; }
  uint64_t count() const { return keys_.size(); }

 private:
  void key(const std::string& k, uint32_t type);
  std::string bytes_;
  std::vector<std::string> keys_;
};

// A tensor to write: its shape in torch's order (outermost first; GGUF stores it reversed).
struct GgufTensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  GgufType type = GgufType::kF32;
};

// Writes `path` atomically: the header, then `produce(name)` for each tensor in order (a float
// tensor of its shape, converted to its type here). A Q8_0 tensor whose innermost dimension is
// not a multiple of 32, a repeated name or a produced tensor of another shape is an error naming
// it, and `path` is left untouched.
void save_gguf(const std::filesystem::path& path, const GgufMetadata& metadata,
               const std::vector<GgufTensorSpec>& tensors,
               const std::function<torch::Tensor(const std::string&)>& produce);

// A GGUF file read whole: its metadata as JSON (arrays as arrays, numbers and booleans as such)
// and its tensors dequantized to float32 in torch's order of dimensions.
struct GgufFile {
  uint32_t version = 0;
  nlohmann::json metadata = nlohmann::json::object();
  std::vector<std::string> tensor_order;
  std::map<std::string, GgufType> types;
  std::map<std::string, torch::Tensor> tensors;
};
GgufFile read_gguf(const std::filesystem::path& path);

}  // namespace btx
