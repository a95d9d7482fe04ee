#include "btx/io/gguf.h"

#include <cstring>
#include <set>

#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kVersion = 3;
constexpr uint64_t kAlignment = 32;

// GGUF's value types.
enum : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32v = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12
};

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

uint64_t pad_to(uint64_t n) {
  return (n + kAlignment - 1) / kAlignment * kAlignment;
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

uint64_t data_bytes(GgufType t, int64_t n) {
  switch (t) {
    case GgufType::kF32:
      return 4 * n;
    case GgufType::kF16:
    case GgufType::kBF16:
      return 2 * n;
    case GgufType::kQ8_0:
      return n / kQ8BlockSize * (2 + kQ8BlockSize);
  }
  return 0;
}

// ggml's quantize_row_q8_0_ref over a [n] float tensor (n a multiple of 32): per block of 32, the
// scale d = max|x| / 127 as float16, then round-half-away-from-zero(x / d) as int8.
torch::Tensor quantize_q8_0(const torch::Tensor& x) {
  const auto blocks = x.reshape({-1, kQ8BlockSize}).to(torch::kFloat32);
  const auto d = blocks.abs().amax(1, true) / 127.0f;
  const auto inv = torch::where(d == 0, torch::zeros_like(d), 1.0f / d);
  const auto v = blocks * inv;
  const auto q = (v.sign() * (v.abs() + 0.5f).floor()).to(torch::kInt8);
  const auto scale = d.to(torch::kHalf).contiguous().view(torch::kUInt8);  // [n, 2]
  return torch::cat({scale, q.view(torch::kUInt8)}, 1).contiguous();
}

torch::Tensor dequantize_q8_0(const uint8_t* p, int64_t n) {
  const int64_t nb = n / kQ8BlockSize;
  auto raw = torch::from_blob(const_cast<uint8_t*>(p), {nb, 2 + kQ8BlockSize}, torch::kUInt8);
  const auto d = raw.narrow(1, 0, 2).contiguous().view(torch::kHalf).to(torch::kFloat32);
  const auto q = raw.narrow(1, 2, kQ8BlockSize).contiguous().view(torch::kInt8).to(torch::kFloat32);
  return (q * d).reshape({n});
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::kF32:
      return "f32";
    case GgufType::kF16:
      return "f16";
    case GgufType::kQ8_0:
      return "q8_0";
    case GgufType::kBF16:
      return "bf16";
  }
  return "?";
}

void GgufMetadata::key(const std::string& k, uint32_t type) {
  for (const auto& old : keys_) BTX_CHECK(old != k, "GGUF metadata key {} given twice", k);
  keys_.push_back(k);
  put_string(bytes_, k);
  put<uint32_t>(bytes_, type);
}
void GgufMetadata::add_u32(const std::string& k, uint32_t v) {
  key(k, kU32);
  put(bytes_, v);
}
void GgufMetadata::add_i32(const std::string& k, int32_t v) {
  key(k, kI32);
  put(bytes_, v);
}
void GgufMetadata::add_u64(const std::string& k, uint64_t v) {
  key(k, kU64);
  put(bytes_, v);
}
void GgufMetadata::add_f32(const std::string& k, float v) {
  key(k, kF32v);
  put(bytes_, v);
}
void GgufMetadata::add_bool(const std::string& k, bool v) {
  key(k, kBool);
  put<uint8_t>(bytes_, v ? 1 : 0);
}
void GgufMetadata::add_string(const std::string& k, const std::string& v) {
  key(k, kString);
  put_string(bytes_, v);
}
void GgufMetadata::add_strings(const std::string& k, const std::vector<std::string>& v) {
  key(k, kArray);
  put<uint32_t>(bytes_, kString);
  put<uint64_t>(bytes_, v.size());
  for (const auto& s : v) put_string(bytes_, s);
}
void GgufMetadata::add_f32s(const std::string& k, const std::vector<float>& v) {
  key(k, kArray);
  put<uint32_t>(bytes_, kF32v);
  put<uint64_t>(bytes_, v.size());
  bytes_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}
void GgufMetadata::add_i32s(const std::string& k, const std::vector<int32_t>& v) {
  key(k, kArray);
  put<uint32_t>(bytes_, kI32);
  put<uint64_t>(bytes_, v.size());
  bytes_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int32_t));
}

void save_gguf(const fs::path& path, const GgufMetadata& metadata,
               const std::vector<GgufTensorSpec>& tensors,
               const std::function<torch::Tensor(const std::string&)>& produce) {
  std::string head;
  put<uint32_t>(head, kMagic);
  put<uint32_t>(head, kVersion);
  put<uint64_t>(head, tensors.size());
  put<uint64_t>(head, metadata.count());
  head += metadata.bytes();
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    BTX_CHECK(names.insert(t.name).second, "{}: tensor {} given twice", path.string(), t.name);
    BTX_CHECK(!t.shape.empty() && t.shape.size() <= 4, "{}: tensor {} has {} dimensions (1-4)",
              path.string(), t.name, t.shape.size());
    BTX_CHECK(t.type != GgufType::kQ8_0 || t.shape.back() % kQ8BlockSize == 0,
              "{}: tensor {} has rows of {} values, which q8_0 cannot hold (blocks of {}): write "
              "the model in f32, f16 or bf16",
              path.string(), t.name, t.shape.back(), kQ8BlockSize);
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(head, *it);
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, offset);
    offset = pad_to(offset + data_bytes(t.type, numel(t.shape)));
  }
  head.resize(pad_to(head.size()), '\0');
  AtomicFile out(path);
  out.write(head.data(), head.size());
  const std::string zeros(kAlignment, '\0');
  for (const auto& t : tensors) {
    torch::Tensor x = produce(t.name);
    BTX_CHECK(x.sizes().vec() == t.shape, "{}: tensor {} was produced with shape {}, expected {}",
              path.string(), t.name, fmt::join(x.sizes(), "x"), fmt::join(t.shape, "x"));
    x = x.to(torch::kCPU, torch::kFloat32).contiguous().reshape({-1});
    switch (t.type) {
      case GgufType::kF32:
        break;
      case GgufType::kF16:
        x = x.to(torch::kHalf);
        break;
      case GgufType::kBF16:
        x = x.to(torch::kBFloat16);
        break;
      case GgufType::kQ8_0:
        x = quantize_q8_0(x);
        break;
    }
    const uint64_t n = data_bytes(t.type, numel(t.shape));
    BTX_CHECK(static_cast<uint64_t>(x.nbytes()) == n, "{}: tensor {}: {} bytes, expected {}",
              path.string(), t.name, x.nbytes(), n);
    out.write(x.data_ptr(), n);
    out.write(zeros.data(), pad_to(n) - n);
  }
  out.commit();
}

namespace {

// A bounds-checked cursor over the file's bytes.
struct Cursor {
  const std::string& s;
  const fs::path& path;
  size_t pos = 0;
  void need(uint64_t n, const char* what) const {
    BTX_CHECK(n <= s.size() - pos, "{}: truncated at byte {} (reading {})", path.string(), pos,
              what);
  }
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, s.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str(const char* what) {
    const auto n = get<uint64_t>(what);
    need(n, what);
    std::string v = s.substr(pos, n);
    pos += n;
    return v;
  }
  nlohmann::json value(uint32_t type, const std::string& key, int depth = 0) {
    switch (type) {
      case kU8:
        return get<uint8_t>("u8");
      case kI8:
        return get<int8_t>("i8");
      case kU16:
        return get<uint16_t>("u16");
      case kI16:
        return get<int16_t>("i16");
      case kU32:
        return get<uint32_t>("u32");
      case kI32:
        return get<int32_t>("i32");
      case kF32v:
        return get<float>("f32");
      case kBool:
        return get<uint8_t>("bool") != 0;
      case kString:
        return str("string");
      case kU64:
        return get<uint64_t>("u64");
      case kI64:
        return get<int64_t>("i64");
      case kF64:
        return get<double>("f64");
      case kArray: {
        BTX_CHECK(depth == 0, "{}: key {}: nested arrays are not read", path.string(), key);
        const auto et = get<uint32_t>("array type");
        const auto n = get<uint64_t>("array length");
        need(n, "array");  // at least a byte per element
        nlohmann::json a = nlohmann::json::array();
        for (uint64_t i = 0; i < n; ++i) a.push_back(value(et, key, depth + 1));
        return a;
      }
      default:
        fail("{}: key {} has value type {}, which GGUF does not define", path.string(), key, type);
    }
  }
};

}  // namespace

GgufFile read_gguf(const fs::path& path) {
  const std::string bytes = read_file(path);
  Cursor c{bytes, path};
  BTX_CHECK(c.get<uint32_t>("magic") == kMagic, "{}: not a GGUF file (no GGUF magic)",
            path.string());
  GgufFile f;
  f.version = c.get<uint32_t>("version");
  BTX_CHECK(f.version == 3, "{}: GGUF version {}; version 3 is read", path.string(), f.version);
  const auto n_tensors = c.get<uint64_t>("tensor count");
  const auto n_kv = c.get<uint64_t>("key count");
  c.need(n_kv, "metadata");
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = c.str("key");
    const auto type = c.get<uint32_t>("value type");
    BTX_CHECK(!f.metadata.contains(key), "{}: key {} twice", path.string(), key);
    f.metadata[key] = c.value(type, key);
  }
  struct Info {
    std::vector<int64_t> shape;
    GgufType type;
    uint64_t offset;
  };
  std::vector<Info> infos;
  c.need(n_tensors, "tensor infos");
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const std::string name = c.str("tensor name");
    const auto dims = c.get<uint32_t>("dimensions");
    BTX_CHECK(dims >= 1 && dims <= 4, "{}: tensor {} has {} dimensions", path.string(), name, dims);
    std::vector<int64_t> ne(dims);
    for (auto& d : ne) {
      d = static_cast<int64_t>(c.get<uint64_t>("dimension"));
      BTX_CHECK(d > 0 && d < (int64_t{1} << 40), "{}: tensor {} has a dimension of {}",
                path.string(), name, d);
    }
    const auto type = static_cast<GgufType>(c.get<uint32_t>("tensor type"));
    BTX_CHECK(type == GgufType::kF32 || type == GgufType::kF16 || type == GgufType::kBF16 ||
                  type == GgufType::kQ8_0,
              "{}: tensor {} has ggml type {}, which btx does not read", path.string(), name,
              static_cast<uint32_t>(type));
    const uint64_t offset = c.get<uint64_t>("tensor offset");
    BTX_CHECK(!f.types.count(name), "{}: tensor {} twice", path.string(), name);
    f.tensor_order.push_back(name);
    f.types[name] = type;
    infos.push_back({std::vector<int64_t>(ne.rbegin(), ne.rend()), type, offset});
  }
  uint64_t align = kAlignment;
  if (f.metadata.contains("general.alignment")) align = f.metadata["general.alignment"];
  BTX_CHECK(align > 0, "{}: general.alignment is 0", path.string());
  const uint64_t data = (c.pos + align - 1) / align * align;
  for (size_t i = 0; i < infos.size(); ++i) {
    const auto& info = infos[i];
    const int64_t n = numel(info.shape);
    BTX_CHECK(info.type != GgufType::kQ8_0 || info.shape.back() % kQ8BlockSize == 0,
              "{}: q8_0 tensor {} has rows of {} values", path.string(), f.tensor_order[i],
              info.shape.back());
    const uint64_t size = data_bytes(info.type, n);
    BTX_CHECK(data <= bytes.size() && info.offset <= bytes.size() - data &&
                  size <= bytes.size() - data - info.offset,
              "{}: tensor {} lies past the end of the file", path.string(), f.tensor_order[i]);
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data() + data + info.offset);
    torch::Tensor t;
    switch (info.type) {
      case GgufType::kF32:
        t = torch::from_blob(const_cast<uint8_t*>(p), {n}, torch::kFloat32).clone();
        break;
      case GgufType::kF16:
        t = torch::from_blob(const_cast<uint8_t*>(p), {n}, torch::kHalf).to(torch::kFloat32);
        break;
      case GgufType::kBF16:
        t = torch::from_blob(const_cast<uint8_t*>(p), {n}, torch::kBFloat16).to(torch::kFloat32);
        break;
      case GgufType::kQ8_0:
        t = dequantize_q8_0(p, n);
        break;
    }
    f.tensors[f.tensor_order[i]] = t.reshape(info.shape);
  }
  return f;
}

}  // namespace btx
