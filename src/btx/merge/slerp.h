// Spherical linear interpolation of weights, as Symphony-MoE (Wang et al. 2025,
// arXiv:2509.18542) fuses the attention of models that do not share a seed (and as model-merging
// tools merge two models): the angle between the two tensors, flattened, is interpolated rather
// than the tensors themselves, so that fusing two unrelated directions does not shrink the
// result the way their average does.
//   slerp(a, b, t) = sin((1-t)θ)/sin θ · a + sin(tθ)/sin θ · b,   cos θ = <a, b> / (|a| |b|),
// the plain linear interpolation where θ is too small for sin θ to divide by.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace btx {

// a and b of the same shape, t in [0, 1]; float64 inside, `a`'s dtype out.
torch::Tensor slerp(const torch::Tensor& a, const torch::Tensor& b, double t);

// Several tensors fused with equal weight on the sphere, in no order: the direction of the sum of
// their unit directions, with the mean of their norms. Two tensors of equal norm give exactly
// slerp(a, b, 1/2); directions that cancel out give the plain average.
torch::Tensor slerp_all(const std::vector<torch::Tensor>& tensors);

}  // namespace btx
