#include "btx/train/fisher.h"

#include "btx/util/error.h"

namespace btx {

std::map<std::string, torch::Tensor> diagonal_fisher(CausalLM& model,
                                                     const torch::Tensor& windows) {
  BTX_CHECK(windows.dim() == 2 && windows.size(0) >= 1 && windows.size(1) >= 2,
            "Fisher information needs at least one window of two tokens, got a tensor of shape "
            "({})",
            fmt::join(windows.sizes(), ", "));
  torch::AutoGradMode grad(true);
  const bool was_training = model->is_training();
  model->eval();
  std::map<std::string, torch::Tensor> fisher;
  const auto params = model->named_parameters();
  for (const auto& p : params) {
    fisher[p.key()] = torch::zeros_like(p.value(), torch::kFloat32);
    p.value().mutable_grad() = torch::Tensor();
  }
  const int64_t n = windows.size(0);
  for (int64_t i = 0; i < n; ++i) {
    token_nll(model, windows.narrow(0, i, 1)).sum().backward();
    for (const auto& p : params) {
      auto& g = p.value().mutable_grad();
      if (!g.defined()) continue;  // a parameter this text does not reach
      fisher[p.key()].add_(g.to(torch::kFloat32).square(), 1.0 / static_cast<double>(n));
      g = torch::Tensor();
    }
  }
  model->train(was_training);
  return fisher;
}

}  // namespace btx
