// The device this process runs its models on. `btx --device cuda:1 ...` (or $BTX_DEVICE, which
// child processes of `btx run` and `btx launch` inherit) sets it for the whole process: models
// are created or loaded on it, and batches are moved to it; files are always read and written
// from CPU copies. The default is the CPU.
#pragma once

#include <torch/torch.h>

#include <string>

namespace btx {

// "cpu", "cuda" (the first visible GPU) or "cuda:N". Anything else, CUDA when this LibTorch has
// none or sees no GPU, or an N beyond the visible GPUs, is a btx::Error naming `what` (the
// option or variable) and the value.
torch::Device parse_device(const std::string& spec, const std::string& what);

void set_default_device(torch::Device device);
torch::Device default_device();  // kCPU unless set

// The device of a module's parameters (the CPU for a module without any).
torch::Device device_of(const torch::nn::Module& module);

// Mixed precision for this process's forward passes (training and evaluation): "fp32" (the
// default) or "bf16", from `btx --precision` or $BTX_PRECISION. Anything else is a btx::Error
// naming `what`. Returns whether it is bf16.
bool parse_precision(const std::string& spec, const std::string& what);
void set_default_bf16(bool bf16);
bool default_bf16();

// bf16 autocast on `device`'s type while it lives, when `enabled`: matrix products run in bf16,
// while the weights, their gradients and the optimizer's state stay fp32 (the master copy).
// Restores the previous state; nests. A no-op when not enabled.
class AutocastGuard {
 public:
  AutocastGuard(torch::Device device, bool enabled);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  torch::DeviceType type_;
  bool enabled_, was_enabled_ = false;
  torch::ScalarType was_dtype_ = torch::kFloat32;
};

}  // namespace btx
