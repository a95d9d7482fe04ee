#include "btx/train/adamw.h"

#include <torch/version.h>

#include <cmath>

#include "btx/util/error.h"

namespace btx {

AdamW::AdamW(const std::vector<std::pair<std::string, torch::Tensor>>& named_params, AdamWOptions o)
    : opt_(o) {
  for (const auto& [name, p] : named_params) {
    if (!p.requires_grad()) continue;
    slots_.push_back(
        {name, p, torch::zeros_like(p), torch::zeros_like(p), p.dim() >= 2, {}, {}, {}});
  }
}

void AdamW::zero_grad() {
  for (auto& s : slots_) {
    if (s.param.grad().defined()) s.param.mutable_grad().zero_();
  }
}

void AdamW::set_update_mask(const std::string& name, const torch::Tensor& mask) {
  for (auto& s : slots_) {
    if (s.name != name) continue;
    BTX_CHECK(mask.sizes() == s.param.sizes(), "AdamW: the update mask of '{}' is {}, not {}", name,
              fmt::format("{}", fmt::join(mask.sizes(), "x")),
              fmt::format("{}", fmt::join(s.param.sizes(), "x")));
    s.frozen = mask.to(s.param.device()).eq(0);
    s.frozen_values = s.param.detach().clone();
    return;
  }
  fail("AdamW: no trained parameter '{}' to mask", name);
}

bool AdamW::fused_step(double lr) {
#if TORCH_VERSION_MAJOR >= 2
  if (slots_.empty() || !slots_[0].param.is_cuda()) return false;
  // Two groups: the matrices decay, norms and biases do not.
  bool updated = false;
  for (const bool decay : {true, false}) {
    std::vector<torch::Tensor> params, grads, avgs, sqs, steps;
    for (auto& s : slots_) {
      if (s.decay != decay || !s.param.grad().defined()) continue;
      if (!s.step.defined()) s.step = torch::zeros({}, s.param.options().dtype(torch::kFloat32));
      s.step.fill_(static_cast<double>(step_));
      params.push_back(s.param);
      grads.push_back(s.param.grad());
      avgs.push_back(s.exp_avg);
      sqs.push_back(s.exp_avg_sq);
      steps.push_back(s.step);
    }
    if (params.empty()) continue;
    try {
      at::_fused_adamw_(params, grads, avgs, sqs, /*max_exp_avg_sqs=*/{}, steps, lr, opt_.beta1,
                        opt_.beta2, decay ? opt_.weight_decay : 0.0, opt_.eps, /*amsgrad=*/false,
                        /*maximize=*/false);
      updated = true;
    } catch (const c10::Error&) {
      if (!updated) return false;  // nothing updated yet: the loop does it all
      throw;                       // one group is updated: a half step is no step
    }
  }
  for (auto& s : slots_) {
    if (s.frozen.defined()) s.param.copy_(torch::where(s.frozen, s.frozen_values, s.param));
  }
  return true;
#else
  (void)lr;
  return false;
#endif
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  last_fused_ = opt_.fused && fused_step(lr);
  if (last_fused_) return;
  const double bc1 = 1.0 - std::pow(opt_.beta1, static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(opt_.beta2, static_cast<double>(step_));
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined()) continue;
    if (s.decay && opt_.weight_decay != 0) s.param.mul_(1.0 - lr * opt_.weight_decay);
    s.exp_avg.mul_(opt_.beta1).add_(g, 1.0 - opt_.beta1);
    s.exp_avg_sq.mul_(opt_.beta2).addcmul_(g, g, 1.0 - opt_.beta2);
    auto denom = (s.exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(opt_.eps);
    s.param.addcdiv_(s.exp_avg, denom, -lr / bc1);
    if (s.frozen.defined()) s.param.copy_(torch::where(s.frozen, s.frozen_values, s.param));
  }
}

std::map<std::string, torch::Tensor> AdamW::state() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& s : slots_) {
    out[s.name + ".exp_avg"] = s.exp_avg;
    out[s.name + ".exp_avg_sq"] = s.exp_avg_sq;
  }
  return out;
}

void AdamW::load_state(const std::map<std::string, torch::Tensor>& st, int64_t steps,
                       const std::string& where) {
  torch::NoGradGuard no_grad;
  BTX_CHECK(st.size() == 2 * slots_.size(),
            "{}: optimizer state has {} tensors, expected {} (a different model?)", where,
            st.size(), 2 * slots_.size());
  for (auto& s : slots_) {
    for (auto [suffix, dst] : {std::pair{".exp_avg", &s.exp_avg}, {".exp_avg_sq", &s.exp_avg_sq}}) {
      auto it = st.find(s.name + suffix);
      BTX_CHECK(it != st.end(), "{}: optimizer state lacks '{}{}'", where, s.name, suffix);
      BTX_CHECK(it->second.sizes() == dst->sizes(),
                "{}: optimizer state '{}{}' has shape {}, "
                "expected {}",
                where, s.name, suffix, fmt::join(it->second.sizes(), "x"),
                fmt::join(dst->sizes(), "x"));
      dst->copy_(it->second);
    }
  }
  step_ = steps;
}

double lr_at(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr) {
  if (step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double span = static_cast<double>(std::max<int64_t>(1, total - warmup));
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  return min_lr + 0.5 * (1.0 + std::cos(M_PI * progress)) * (lr - min_lr);
}

}  // namespace btx
