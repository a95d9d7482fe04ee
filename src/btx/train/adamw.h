// AdamW (Loshchilov & Hutter 2019) with decoupled weight decay, applied only to matrices (not to
// norms or biases), and a state that is plain named tensors so checkpoints store it as
// safetensors. Same update as torch.optim.AdamW; our own so that its state is ours to save.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace btx {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  // One fused kernel for all the parameters (at::_fused_adamw_, LibTorch 2.x, parameters on a
  // GPU); elsewhere, or when it refuses them, the per-tensor update below. The same update.
  bool fused = true;
};

class AdamW {
 public:
  AdamW(const std::vector<std::pair<std::string, torch::Tensor>>& named_params, AdamWOptions o);
  // One update with learning rate `lr` from the parameters' current .grad().
  void step(double lr);
  // Whether the last step ran fused (AdamWOptions::fused).
  bool last_step_fused() const { return last_fused_; }
  void zero_grad();
  // Where `mask` (the parameter's shape, 0/1) is 0 the parameter keeps its current value
  // bitwise through every later step (no update, no decay); the caller zeroes the gradient there
  // too (the trainer does, with a hook), so clipping and the moments do not see it.
  void set_update_mask(const std::string& name, const torch::Tensor& mask);
  int64_t steps() const { return step_; }
  // "<param>.exp_avg" / "<param>.exp_avg_sq" -> tensor; the step count is saved separately.
  std::map<std::string, torch::Tensor> state() const;
  // Restores a state() of the same parameters; a missing or misshaped tensor is an error naming it.
  void load_state(const std::map<std::string, torch::Tensor>& s, int64_t steps,
                  const std::string& where);

 private:
  struct Slot {
    std::string name;
    torch::Tensor param, exp_avg, exp_avg_sq;
    bool decay;
    torch::Tensor frozen, frozen_values;  // set_update_mask: where it is 0, and the values kept
    torch::Tensor step;                   // the fused kernel's step count (on the device)
  };
  // The fused update of the parameters that have gradients; false when it cannot run here.
  bool fused_step(double lr);
  std::vector<Slot> slots_;
  AdamWOptions opt_;
  int64_t step_ = 0;
  bool last_fused_ = false;
};

// Linear warmup from 0 over `warmup` steps, then cosine decay from lr to min_lr at `total`.
double lr_at(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr);

}  // namespace btx
