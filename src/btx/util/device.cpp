#include "btx/util/device.h"

#include <algorithm>
#include <atomic>
#include <cctype>

#include "btx/util/error.h"

namespace btx {

namespace {
// Written once at start-up (the CLI), read by every model construction after it.
std::atomic<int> g_index{-1};  // -1: the CPU; otherwise the CUDA device index
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

}  // namespace btx
