#include "btx/merge/fisher_merge.h"

#include <spdlog/spdlog.h>

#include <map>

#include "btx/model/param_roles.h"
#include "btx/train/checkpoint.h"
#include "btx/train/fisher.h"
#include "btx/util/error.h"

namespace btx {

namespace {
// The group a parameter's weights are summarised under in merge.json (the tied LM head is the
// embedding).
std::string weight_group(const std::string& param) {
  const ParamRole role = param_role(param);
  return role == ParamRole::kLmHead ? "embedding" : role_name(role);
}
}  // namespace

nlohmann::json fisher_average(const MergeContext& ctx, const std::vector<MoeSlot>& slots,
                              int64_t windows, const fs::path& out) {
  BTX_CHECK(!slots.empty(), "Fisher-weighted average of no checkpoints");
  BTX_CHECK(windows >= 1, "Fisher-weighted average: --fisher-windows {} (expected >= 1)", windows);
  const int64_t T = ctx.run.config().experts.train.seq_len;
  // Σ_i F_i θ_i and Σ_i F_i, and each slot's F_i kept for the summary, per parameter.
  std::map<std::string, torch::Tensor> weighted, total, uniform;
  std::vector<std::map<std::string, torch::Tensor>> fishers;
  CausalLM model{nullptr};
  for (const auto& slot : slots) {
    const torch::Tensor data =
        slot_heldout_windows(ctx, slot, windows, T, "Fisher-weighted average");
    model = load_model(slot.checkpoint);
    auto fisher = diagonal_fisher(model, data);
    torch::NoGradGuard no_grad;
    for (const auto& p : model->named_parameters()) {
      const auto& f = fisher.at(p.key());
      const auto theta = p.value().to(torch::kFloat64);
      const auto f64 = f.to(torch::kFloat64);
      if (!weighted.count(p.key())) {
        weighted[p.key()] = f64 * theta;
        total[p.key()] = f64.clone();
        uniform[p.key()] = theta.clone();
      } else {
        weighted[p.key()].add_(f64 * theta);
        total[p.key()].add_(f64);
        uniform[p.key()].add_(theta);
      }
    }
    fishers.push_back(std::move(fisher));
    spdlog::info("Fisher of '{}' on {} held-out windows of {}", slot.name, data.size(0),
                 fmt::join(slot.domains, ", "));
  }
  const double n = static_cast<double>(slots.size());
  std::map<std::string, std::vector<double>> group_weight;  // group -> per slot, summed
  std::map<std::string, double> group_elements;
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : model->named_parameters()) {
      const auto& name = p.key();
      const auto& tot = total.at(name);
      // Elements no model's fit depends on (F ~ 0 everywhere) keep the uniform mean.
      const double floor = 1e-6 * tot.mean().item<double>() + 1e-30;
      const auto eps = torch::full_like(tot, floor / n);
      const auto merged = (weighted.at(name) + eps * uniform.at(name)) / (tot + eps * n);
      p.value().copy_(merged.to(p.value().dtype()));
      const std::string group = weight_group(name);
      auto& gw = group_weight[group];
      gw.resize(slots.size(), 0.0);
      for (size_t i = 0; i < slots.size(); ++i) {
        const auto share = (fishers[i].at(name).to(torch::kFloat64) + eps) / (tot + eps * n);
        gw[i] += share.sum().item<double>();
      }
      group_elements[group] += static_cast<double>(tot.numel());
    }
  }
  save_checkpoint(out, {&model, nullptr, nullptr, {}});
  nlohmann::json weights = nlohmann::json::object();
  for (const auto& [group, per_slot] : group_weight) {
    nlohmann::json w = nlohmann::json::object();
    for (size_t i = 0; i < slots.size(); ++i) {
      w[slots[i].name] = per_slot[i] / group_elements.at(group);
    }
    weights[group] = w;
  }
  return {{"fisher_windows", windows}, {"mean_fisher_weight", weights}};
}

}  // namespace btx
