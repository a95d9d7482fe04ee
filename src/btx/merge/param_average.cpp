// Streaming weighted average: all inputs are opened and checked against each other (config,
// tensor names, shapes, dtypes) from their headers alone, then the output file is written tensor
// by tensor through save_safetensors_streaming, each tensor averaged slice by slice straight from
// the input files.
#include "btx/merge/param_average.h"

#include <cmath>
#include <cstring>

#include "btx/io/safetensors.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {
namespace {

// Elements averaged at a time: bounds the buffers besides the output tensor (a few MB).
constexpr int64_t kChunk = 1 << 18;

struct Input {
  fs::path dir;
  double weight = 0;  // normalised: the weights of all inputs sum to 1
  SafetensorsReader reader;
};

// Checks the weights; returns their sum.
double check_weights(const std::vector<WeightedCheckpoint>& inputs, const std::string& out_dir) {
  BTX_CHECK(!inputs.empty(), "averaging into {}: no checkpoints given", out_dir);
  double total = 0;
  std::vector<std::string> dirs;
  for (const auto& in : inputs) {
    BTX_CHECK(std::isfinite(in.weight), "{}: weight {} is not a finite number", in.dir.string(),
              in.weight);
    BTX_CHECK(in.weight >= 0, "{}: weight {} is negative (weights must be >= 0)", in.dir.string(),
              in.weight);
    total += in.weight;
    dirs.push_back(in.dir.string());
  }
  BTX_CHECK(total > 0, "averaging into {}: all weights are zero ({})", out_dir,
            fmt::join(dirs, ", "));
  BTX_CHECK(std::isfinite(total), "averaging into {}: the weights sum to infinity", out_dir);
  return total;
}

// Opens every input (checking it is a checkpoint with the same config as the first) and
// normalises the weights by their sum, `total`.
std::vector<Input> open_inputs(const std::vector<WeightedCheckpoint>& inputs, double total,
                               ModelConfig* config) {
  std::vector<Input> out;
  for (const auto& in : inputs) {
    const std::string dir = in.dir.string();
    BTX_CHECK(fs::exists(in.dir), "{} is not a checkpoint: the folder does not exist", dir);
    BTX_CHECK(fs::is_directory(in.dir), "{} is not a checkpoint: it is not a folder", dir);
    const fs::path model = in.dir / "model.safetensors";
    BTX_CHECK(fs::exists(model), "{} is not a checkpoint: {} is missing", dir, model.string());
    const ModelConfig c = load_model_config(in.dir);
    if (out.empty()) {
      *config = c;
    } else {
      BTX_CHECK(c == *config,
                "{} and {} have different model configs ({}): only checkpoints of one "
                "architecture can be averaged",
                out.front().dir.string(), dir, model_config_difference(*config, c));
    }
    out.push_back({in.dir, in.weight / total, SafetensorsReader(model)});
  }
  return out;
}

// Every input holds the same tensor names, shapes and dtypes as the first; returns that layout.
TensorLayout common_layout(const std::vector<Input>& inputs) {
  const Input& ref = inputs.front();
  for (const Input& in : inputs) {
    for (const auto& [name, info] : ref.reader.tensors()) {
      const auto it = in.reader.tensors().find(name);
      BTX_CHECK(it != in.reader.tensors().end(), "tensor '{}' is in {} but missing from {}", name,
                ref.dir.string(), in.dir.string());
      BTX_CHECK(it->second.shape == info.shape && it->second.dtype == info.dtype,
                "tensor '{}' is {} [{}] in {} but {} [{}] in {}", name, info.dtype,
                fmt::join(info.shape, ", "), ref.dir.string(), it->second.dtype,
                fmt::join(it->second.shape, ", "), in.dir.string());
    }
    for (const auto& [name, info] : in.reader.tensors()) {
      BTX_CHECK(ref.reader.contains(name), "tensor '{}' is in {} but missing from {}", name,
                in.dir.string(), ref.dir.string());
    }
  }
  TensorLayout layout;
  for (const auto& [name, info] : ref.reader.tensors()) {
    const torch::ScalarType type = info.scalar_type();
    BTX_CHECK(torch::isFloatingType(type),
              "{}: tensor '{}' has dtype {}: only floating-point tensors can be averaged",
              ref.reader.path().string(), name, info.dtype);
    layout[name] = {type, info.shape};
  }
  return layout;
}

bool same_bytes(const torch::Tensor& a, const torch::Tensor& b) {
  const size_t n = static_cast<size_t>(a.numel()) * a.element_size();
  return n == 0 || std::memcmp(a.data_ptr(), b.data_ptr(), n) == 0;
}

// Σ_i p_i θ_i of one tensor, kChunk elements at a time, each input's slice read into one reused
// buffer. Within a slice, while every input read so far holds the same bytes, the first input's
// bytes stand (exact for every dtype and value); a float64 accumulator takes over at the first
// difference. Zero-weight inputs are not read. Memory: the output tensor plus four slices.
torch::Tensor average_tensor(const std::string& name, const TensorSpec& spec,
                             const std::vector<Input>& inputs) {
  torch::Tensor out = torch::empty(spec.shape, spec.dtype);
  const torch::Tensor flat = out.view({-1});
  const int64_t n = flat.numel();
  const int64_t chunk = std::min(n, kChunk);
  const torch::Tensor buf = torch::empty({chunk}, spec.dtype);        // one input's slice
  const torch::Tensor wide = torch::empty({chunk}, torch::kFloat64);  // ... in float64
  const torch::Tensor acc = torch::empty({chunk}, torch::kFloat64);
  for (int64_t i = 0; i < n; i += chunk) {
    const int64_t len = std::min(chunk, n - i);
    const torch::Tensor o = flat.slice(0, i, i + len);
    const torch::Tensor x = buf.slice(0, 0, len), w = wide.slice(0, 0, len),
                        a = acc.slice(0, 0, len);
    bool have_first = false, summing = false;
    double first_weight = 0;
    for (const Input& in : inputs) {
      if (in.weight == 0) continue;
      if (!have_first) {
        in.reader.read_range(name, i, o);
        first_weight = in.weight;
        have_first = true;
        continue;
      }
      in.reader.read_range(name, i, x);
      if (!summing) {
        if (same_bytes(o, x)) {
          first_weight += in.weight;
          continue;
        }
        a.copy_(o).mul_(first_weight);  // not 0 + w * θ: a -0.0 stays -0.0
        summing = true;
      }
      w.copy_(x);
      a.add_(w, in.weight);
    }
    if (summing) o.copy_(a);  // cast back to the inputs' dtype
  }
  return out;
}

}  // namespace

struct CheckpointAverager::State {
  ModelConfig config;
  std::vector<Input> inputs;
  TensorLayout layout;
};

CheckpointAverager::CheckpointAverager(const std::vector<WeightedCheckpoint>& inputs,
                                       const std::string& what)
    : state_(std::make_unique<State>()) {
  const double total = check_weights(inputs, what);
  state_->inputs = open_inputs(inputs, total, &state_->config);
  state_->layout = common_layout(state_->inputs);
}

CheckpointAverager::~CheckpointAverager() = default;

const ModelConfig& CheckpointAverager::config() const {
  return state_->config;
}
const TensorLayout& CheckpointAverager::layout() const {
  return state_->layout;
}
size_t CheckpointAverager::size() const {
  return state_->inputs.size();
}

torch::Tensor CheckpointAverager::average(const std::string& name) const {
  auto it = state_->layout.find(name);
  BTX_CHECK(it != state_->layout.end(), "no tensor '{}' in {}", name,
            state_->inputs.front().dir.string());
  return average_tensor(name, it->second, state_->inputs);
}

torch::Tensor CheckpointAverager::read(size_t input, const std::string& name) const {
  return state_->inputs.at(input).reader.read(name);
}

AverageStats average_checkpoints(const std::vector<WeightedCheckpoint>& inputs,
                                 const fs::path& out_dir) {
  const CheckpointAverager avg(inputs, out_dir.string());
  const TensorLayout& layout = avg.layout();
  AverageStats stats;
  const bool created = !fs::exists(out_dir);
  try {
    fs::create_directories(out_dir);
    save_safetensors_streaming(out_dir / "model.safetensors", layout, {{"format", "pt"}},
                               [&](const std::string& name) {
                                 torch::Tensor t = avg.average(name);
                                 stats.tensors += 1;
                                 stats.bytes += t.numel() * static_cast<int64_t>(t.element_size());
                                 return t;
                               });
    write_file_atomic(out_dir / "config.json", model_config_to_json(avg.config()).dump(2));
  } catch (...) {
    if (created) {
      std::error_code ec;
      fs::remove_all(out_dir, ec);
    }
    throw;
  }
  return stats;
}

}  // namespace btx
