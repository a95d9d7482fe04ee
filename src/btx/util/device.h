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

}  // namespace btx
