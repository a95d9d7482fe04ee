#include "btx/util/device.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <cctype>

#include "btx/util/error.h"

namespace btx {

namespace {
// Written once at start-up (the CLI), read by every model construction after it.
std::atomic<int> g_index{-1};  // -1: the CPU; otherwise the CUDA device index
std::atomic<bool> g_bf16{false};

// LibTorch 2.4 made autocast's state per device type; 1.13 has one call per backend.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(torch::DeviceType t) {
  return at::autocast::is_autocast_enabled(t);
}
void set_autocast(torch::DeviceType t, bool on) {
  at::autocast::set_autocast_enabled(t, on);
}
torch::ScalarType autocast_dtype(torch::DeviceType t) {
  return at::autocast::get_autocast_dtype(t);
}
void set_autocast_dtype(torch::DeviceType t, torch::ScalarType d) {
  at::autocast::set_autocast_dtype(t, d);
}
#else
bool autocast_enabled(torch::DeviceType t) {
  return t == torch::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
void set_autocast(torch::DeviceType t, bool on) {
  t == torch::kCUDA ? at::autocast::set_enabled(on) : at::autocast::set_cpu_enabled(on);
}
torch::ScalarType autocast_dtype(torch::DeviceType t) {
  return t == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype()
                           : at::autocast::get_autocast_cpu_dtype();
}
void set_autocast_dtype(torch::DeviceType t, torch::ScalarType d) {
  t == torch::kCUDA ? at::autocast::set_autocast_gpu_dtype(d)
                    : at::autocast::set_autocast_cpu_dtype(d);
}
#endif
}  // namespace

torch::Device parse_device(const std::string& spec, const std::string& what) {
  if (spec == "cpu") return torch::kCPU;
  int64_t index = 0;
  if (spec.rfind("cuda:", 0) == 0) {
    const std::string n = spec.substr(5);
    BTX_CHECK(!n.empty() && n.size() <= 4 &&
                  std::all_of(n.begin(), n.end(), [](unsigned char c) { return std::isdigit(c); }),
              "{} '{}': the GPU index after 'cuda:' must be a number, as in cuda:0", what, spec);
    index = std::stoll(n);
  } else {
    BTX_CHECK(spec == "cuda", "{} '{}' is not a device: use cpu, cuda or cuda:N", what, spec);
  }
  BTX_CHECK(torch::cuda::is_available(),
            "{} '{}': no GPU is usable here (this btx's LibTorch has no CUDA, or sees no GPU); "
            "on a GPU machine, build btx against PyTorch's CUDA LibTorch with "
            "scripts/gpu_build.sh",
            what, spec);
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  BTX_CHECK(index < count, "{} '{}': only {} GPU(s) are visible (cuda:0 to cuda:{})", what, spec,
            count, count - 1);
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(index)};
}

void set_default_device(torch::Device device) {
  g_index = device.is_cpu() ? -1 : static_cast<int>(device.index() < 0 ? 0 : device.index());
}

torch::Device default_device() {
  const int i = g_index.load();
  if (i < 0) return torch::kCPU;
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(i)};
}

torch::Device device_of(const torch::nn::Module& module) {
  for (const auto& p : module.parameters()) return p.device();
  return torch::kCPU;
}

bool parse_precision(const std::string& spec, const std::string& what) {
  BTX_CHECK(spec == "fp32" || spec == "bf16", "{} '{}' is not a precision: use fp32 or bf16", what,
            spec);
  return spec == "bf16";
}

void set_default_bf16(bool bf16) {
  g_bf16 = bf16;
}

bool default_bf16() {
  return g_bf16.load();
}

AutocastGuard::AutocastGuard(torch::Device device, bool enabled)
    : type_(device.type()), enabled_(enabled) {
  if (!enabled_) return;
  was_enabled_ = autocast_enabled(type_);
  was_dtype_ = autocast_dtype(type_);
  set_autocast(type_, true);
  set_autocast_dtype(type_, torch::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  // The casts of weights kept for the scope are dropped when the outermost scope ends.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast(type_, was_enabled_);
  set_autocast_dtype(type_, was_dtype_);
}

}  // namespace btx
