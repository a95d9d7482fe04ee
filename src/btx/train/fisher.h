// The diagonal Fisher information of a model's parameters on token windows, as Fisher-weighted
// merging uses it (Matena & Raffel 2022, "Merging Models with Fisher-Weighted Averaging",
// arXiv:2111.09832): F = mean over windows of (∂ℓ/∂θ)², ℓ a window's summed next-token NLL with
// the observed next tokens as labels (the empirical Fisher), one backward per window. A
// parameter's F says how much the model's fit to that text depends on it: the embedding rows of
// a domain's own tokens, say, weigh more in that domain's expert.
#pragma once

#include <map>
#include <string>

#include "btx/model/llama.h"

namespace btx {

// Per parameter name, F (float32, the parameter's shape) of `model` on `windows` (n, T+1) int64,
// n >= 1. The model's weights and gradients are left as they were (gradients cleared).
std::map<std::string, torch::Tensor> diagonal_fisher(CausalLM& model, const torch::Tensor& windows);

}  // namespace btx
