// safetensors reader/writer: builds/parses the JSON header with nlohmann::json, checks every
// field against the file's real size before allocating, reads each tensor with pread straight
// into its own CPU tensor, and writes each tensor's bytes straight to the output file. It does
// not memory-map, share storage between tensors, or accept files whose tensor byte ranges
// overlap; unused gaps in the data buffer are allowed.
#include "btx/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>

#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; this code copies bytes as-is");

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // same limit as the reference implementation
constexpr const char* kMetadataKey = "__metadata__";

struct DtypeName {
  const char* name;
  torch::ScalarType type;
};
constexpr DtypeName kDtypes[] = {
    {"F64", torch::kFloat64},   {"F32", torch::kFloat32}, {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}, {"I64", torch::kInt64},   {"I32", torch::kInt32},
    {"I16", torch::kInt16},     {"I8", torch::kInt8},     {"U8", torch::kUInt8},
    {"BOOL", torch::kBool},
};

std::optional<torch::ScalarType> scalar_type_of(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.type;
  }
  return std::nullopt;
}

const char* dtype_name_of(torch::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (type == d.type) return d.name;
  }
  return nullptr;
}

// A read-only file descriptor with its size; reads fail loudly instead of returning short.
class InputFile {
 public:
  explicit InputFile(const fs::path& path) : name_(path.string()) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    BTX_CHECK(fd_ >= 0, "cannot open {}: {}", name_, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      fail("cannot read {}: not a regular file", name_);
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~InputFile() { ::close(fd_); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& name() const { return name_; }
  uint64_t size() const { return size_; }

  void read_at(uint64_t offset, void* dst, uint64_t n) const {
    auto* out = static_cast<char*>(dst);
    while (n > 0) {
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1u << 30));
      const ssize_t got = ::pread(fd_, out, chunk, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      BTX_CHECK(got >= 0, "cannot read {}: {}", name_, std::strerror(errno));
      BTX_CHECK(got > 0, "cannot read {}: unexpected end of file at byte {}", name_, offset);
      out += got;
      offset += static_cast<uint64_t>(got);
      n -= static_cast<uint64_t>(got);
    }
  }

 private:
  std::string name_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

struct Header {
  std::map<std::string, TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data buffer
};

TensorInfo parse_entry(const std::string& file, const std::string& name, const json& e,
                       uint64_t buffer_size) {
  const std::string at = fmt::format("{}: tensor '{}'", file, name);
  BTX_CHECK(e.is_object(), "{}: header entry is a JSON {}, not an object", at, e.type_name());
  TensorInfo info;

  const auto dtype = e.find("dtype");
  BTX_CHECK(dtype != e.end() && dtype->is_string(), "{}: missing or non-string \"dtype\"", at);
  info.dtype = dtype->get<std::string>();
  const auto type = scalar_type_of(info.dtype);
  BTX_CHECK(type.has_value(), "{}: unknown dtype '{}'", at, info.dtype);

  const auto shape = e.find("shape");
  BTX_CHECK(shape != e.end() && shape->is_array(), "{}: missing or non-array \"shape\"", at);
  uint64_t numel = 1;
  for (const json& d : *shape) {
    BTX_CHECK(d.is_number_integer(), "{}: shape holds a JSON {}, not an integer", at,
              d.type_name());
    BTX_CHECK(d.is_number_unsigned(), "{}: negative shape dimension {}", at, d.get<int64_t>());
    const uint64_t dim = d.get<uint64_t>();
    BTX_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                  !__builtin_mul_overflow(numel, dim, &numel),
              "{}: shape product overflows", at);
    info.shape.push_back(static_cast<int64_t>(dim));
  }
  const uint64_t elem = torch::elementSize(*type);
  uint64_t nbytes = 0;
  BTX_CHECK(numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                !__builtin_mul_overflow(numel, elem, &nbytes),
            "{}: shape product overflows", at);

  const auto offs = e.find("data_offsets");
  BTX_CHECK(offs != e.end() && offs->is_array() && offs->size() == 2,
            "{}: missing \"data_offsets\" or not a [begin, end] array", at);
  BTX_CHECK((*offs)[0].is_number_unsigned() && (*offs)[1].is_number_unsigned(),
            "{}: data_offsets must be non-negative integers", at);
  info.begin = (*offs)[0].get<uint64_t>();
  info.end = (*offs)[1].get<uint64_t>();
  BTX_CHECK(info.begin <= info.end, "{}: data_offsets end {} is before begin {}", at, info.end,
            info.begin);
  BTX_CHECK(info.end <= buffer_size,
            "{}: data_offsets [{}, {}] run past the end of the {}-byte data buffer (file "
            "truncated?)",
            at, info.begin, info.end, buffer_size);
  BTX_CHECK(info.end - info.begin == nbytes,
            "{}: data_offsets span {} bytes but dtype {} with {} elements needs {}", at,
            info.end - info.begin, info.dtype, numel, nbytes);
  return info;
}

// A name as JSON writes it (quoted, control characters escaped): error messages stay one line.
std::string quoted(const std::string& name) {
  return json(name).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::map<std::string, std::string> parse_metadata(const std::string& file, const json& m) {
  BTX_CHECK(m.is_object(), "{}: \"{}\" is a JSON {}, not an object", file, kMetadataKey,
            m.type_name());
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : m.items()) {
    BTX_CHECK(value.is_string(), "{}: metadata {} is a JSON {}, not a string", file, quoted(key),
              value.type_name());
    out[key] = value.get<std::string>();
  }
  return out;
}

// The format's rule: tensors tile the data buffer exactly, in offset order, with no shared bytes
// and no holes (empty tensors own no bytes and may sit anywhere). A header length off by a byte,
// or a dtype relabelled with its offsets, leaves a hole or a remainder and is refused here.
void check_tiling(const std::string& file, const std::map<std::string, TensorInfo>& tensors,
                  uint64_t buffer_size) {
  std::vector<std::tuple<uint64_t, uint64_t, const std::string*>> ranges;
  for (const auto& [name, info] : tensors) {
    if (info.end > info.begin) ranges.emplace_back(info.begin, info.end, &name);
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t covered = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const auto& [b1, e1, n1] = ranges[i];
    if (i > 0) {
      const auto& [b0, e0, n0] = ranges[i - 1];
      BTX_CHECK(b1 >= e0, "{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", file, *n0, b0, e0,
                *n1, b1, e1);
    }
    BTX_CHECK(b1 == covered,
              "{}: bytes [{}, {}) of the data buffer belong to no tensor (the next, '{}', starts "
              "at {}): a wrong header length or data_offsets",
              file, covered, b1, *n1, b1);
    covered = e1;
  }
  BTX_CHECK(covered == buffer_size,
            "{}: the data buffer is {} bytes but its tensors cover {}: a wrong header length, "
            "data_offsets or dtype, or bytes appended",
            file, buffer_size, covered);
}

Header read_header(const InputFile& f) {
  const std::string& file = f.name();
  BTX_CHECK(f.size() >= 8, "{}: file is {} bytes, too short for a safetensors header", file,
            f.size());
  uint64_t n = 0;
  f.read_at(0, &n, 8);
  BTX_CHECK(n <= kMaxHeaderBytes, "{}: header length {} exceeds the {}-byte limit", file, n,
            kMaxHeaderBytes);
  BTX_CHECK(n <= f.size() - 8, "{}: header length {} runs past the end of the {}-byte file", file,
            n, f.size());
  std::string text(static_cast<size_t>(n), '\0');
  f.read_at(8, text.data(), n);

  Header h;
  h.data_start = 8 + n;
  const uint64_t buffer_size = f.size() - h.data_start;
  const size_t depth = json_nesting_depth(text);
  BTX_CHECK(depth <= kMaxJsonDepth,
            "{}: safetensors header nested {} levels deep; at most {} are read", file, depth,
            kMaxJsonDepth);
  try {
    const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    BTX_CHECK(!j.is_discarded(), "{}: safetensors header is not valid JSON", file);
    BTX_CHECK(j.is_object(), "{}: safetensors header is a JSON {}, not an object", file,
              j.type_name());
    for (const auto& [name, entry] : j.items()) {
      if (name == kMetadataKey) {
        h.metadata = parse_metadata(file, entry);
      } else {
        BTX_CHECK(std::none_of(name.begin(), name.end(),
                               [](char ch) { return static_cast<unsigned char>(ch) < 0x20; }),
                  "{}: tensor name {} holds a control character", file, quoted(name));
        h.tensors[name] = parse_entry(file, name, entry, buffer_size);
      }
    }
  } catch (const json::exception& e) {  // safety net: the checks above should catch all
    fail("{}: bad safetensors header: {}", file, e.what());
  }
  check_tiling(file, h.tensors, buffer_size);
  return h;
}

// Bytes of a tensor of `spec`, checking that its shape is valid and its size fits in 64 bits.
uint64_t byte_size(const std::string& file, const std::string& name, const TensorSpec& spec) {
  uint64_t n = torch::elementSize(spec.dtype);
  for (const int64_t d : spec.shape) {
    BTX_CHECK(d >= 0, "{}: tensor '{}' has negative dimension {}", file, name, d);
    BTX_CHECK(!__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n),
              "{}: tensor '{}': shape product overflows", file, name);
  }
  return n;
}

std::string describe(torch::ScalarType type, c10::IntArrayRef shape) {
  const char* name = dtype_name_of(type);
  return fmt::format("{} [{}]", name ? name : c10::toString(type), fmt::join(shape, ", "));
}

}  // namespace

torch::ScalarType TensorInfo::scalar_type() const {
  const auto type = scalar_type_of(dtype);
  BTX_CHECK(type.has_value(), "unknown safetensors dtype '{}'", dtype);
  return *type;
}

// ---- writing ------------------------------------------------------------------------------

void save_safetensors_streaming(const fs::path& path, const TensorLayout& layout,
                                const std::map<std::string, std::string>& metadata,
                                const std::function<torch::Tensor(const std::string&)>& produce) {
  const std::string file = path.string();
  json header = json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, spec] : layout) {  // std::map: sorted by name
    BTX_CHECK(name != kMetadataKey, "{}: '{}' is reserved, not a tensor name", file, name);
    const char* dtype = dtype_name_of(spec.dtype);
    BTX_CHECK(dtype != nullptr, "{}: tensor '{}' has unsupported dtype {}", file, name,
              c10::toString(spec.dtype));
    const uint64_t n = byte_size(file, name, spec);
    header[name] = {
        {"dtype", dtype}, {"shape", spec.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    fail("{}: cannot encode safetensors header (names and metadata must be UTF-8): {}", file,
         e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  try {
    AtomicFile out(path);
    const uint64_t n = text.size();
    out.write(&n, 8);
    out.write(text.data(), n);
    for (const auto& [name, spec] : layout) {
      torch::Tensor t = produce(name);
      BTX_CHECK(t.defined(), "{}: tensor '{}' was produced undefined", file, name);
      BTX_CHECK(t.layout() == torch::kStrided, "{}: tensor '{}' is not a dense tensor", file, name);
      BTX_CHECK(t.scalar_type() == spec.dtype && t.sizes() == c10::IntArrayRef(spec.shape),
                "{}: tensor '{}' was produced as {}, but the layout says {}", file, name,
                describe(t.scalar_type(), t.sizes()), describe(spec.dtype, spec.shape));
      t = t.detach().to(torch::kCPU).resolve_conj().resolve_neg().contiguous();
      const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
      if (bytes > 0) out.write(t.data_ptr(), bytes);
    }
    out.commit();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("cannot write {}: {}", file, e.what());
  }
}

void save_safetensors(const fs::path& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  TensorLayout layout;
  for (const auto& [name, t] : tensors) {
    BTX_CHECK(t.defined(), "{}: tensor '{}' is undefined", file, name);
    BTX_CHECK(t.layout() == torch::kStrided, "{}: tensor '{}' is not a dense tensor", file, name);
    layout[name] = {t.scalar_type(), t.sizes().vec()};
  }
  save_safetensors_streaming(path, layout, metadata,
                             [&](const std::string& name) { return tensors.at(name); });
}

// ---- reading ------------------------------------------------------------------------------

struct SafetensorsReader::Impl {
  explicit Impl(const fs::path& p) : path(p), file(p), header(read_header(file)) {}
  fs::path path;
  InputFile file;
  Header header;
};

SafetensorsReader::SafetensorsReader(const fs::path& path) : impl_(std::make_unique<Impl>(path)) {}
SafetensorsReader::~SafetensorsReader() = default;
SafetensorsReader::SafetensorsReader(SafetensorsReader&&) noexcept = default;
SafetensorsReader& SafetensorsReader::operator=(SafetensorsReader&&) noexcept = default;

const fs::path& SafetensorsReader::path() const {
  return impl_->path;
}
const std::map<std::string, TensorInfo>& SafetensorsReader::tensors() const {
  return impl_->header.tensors;
}
const std::map<std::string, std::string>& SafetensorsReader::metadata() const {
  return impl_->header.metadata;
}
bool SafetensorsReader::contains(const std::string& name) const {
  return impl_->header.tensors.count(name) > 0;
}

torch::Tensor SafetensorsReader::read(const std::string& name) const {
  const auto it = impl_->header.tensors.find(name);
  BTX_CHECK(it != impl_->header.tensors.end(), "{}: no tensor '{}' in this file (it has {})",
            impl_->file.name(), name, impl_->header.tensors.size());
  torch::Tensor t = torch::empty(it->second.shape, it->second.scalar_type());
  read_range(name, 0, t);
  return t;
}

void SafetensorsReader::read_range(const std::string& name, int64_t start,
                                   const torch::Tensor& out) const {
  const InputFile& f = impl_->file;
  const auto it = impl_->header.tensors.find(name);
  BTX_CHECK(it != impl_->header.tensors.end(), "{}: no tensor '{}' in this file (it has {})",
            f.name(), name, impl_->header.tensors.size());
  const TensorInfo& info = it->second;
  const torch::ScalarType type = info.scalar_type();
  BTX_CHECK(
      out.defined() && out.device().is_cpu() && out.is_contiguous() && out.scalar_type() == type,
      "{}: tensor '{}' ({}) can only be read into a contiguous CPU tensor of that dtype", f.name(),
      name, info.dtype);
  const uint64_t elem = torch::elementSize(type);
  const uint64_t numel = (info.end - info.begin) / elem;
  const uint64_t count = static_cast<uint64_t>(out.numel());
  BTX_CHECK(start >= 0 && static_cast<uint64_t>(start) <= numel &&
                count <= numel - static_cast<uint64_t>(start),
            "{}: elements [{}, {}) are outside tensor '{}' of {} elements", f.name(), start,
            start + out.numel(), name, numel);
  const uint64_t n = count * elem;
  if (n == 0) return;
  f.read_at(impl_->header.data_start + info.begin + static_cast<uint64_t>(start) * elem,
            out.data_ptr(), n);
  if (type == torch::kBool) {  // any byte but 0/1 would be an invalid C++ bool
    const auto* p = static_cast<const uint8_t*>(out.data_ptr());
    for (uint64_t i = 0; i < n; ++i) {
      BTX_CHECK(p[i] <= 1, "{}: tensor '{}' (BOOL) holds byte {} at element {}, not 0 or 1",
                f.name(), name, p[i], static_cast<uint64_t>(start) + i);
    }
  }
}

std::map<std::string, TensorInfo> read_safetensors_header(const fs::path& path) {
  return SafetensorsReader(path).tensors();
}

SafetensorsFile load_safetensors(const fs::path& path) {
  const SafetensorsReader reader(path);
  SafetensorsFile out;
  out.metadata = reader.metadata();
  for (const auto& [name, info] : reader.tensors()) out.tensors.emplace(name, reader.read(name));
  return out;
}

}  // namespace btx
