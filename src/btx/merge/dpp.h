// Greedy MAP inference for a determinantal point process (Chen, Zhang & Zhou 2018, "Fast Greedy
// MAP Inference for Determinantal Point Process to Improve Recommendation Diversity",
// arXiv:1709.05135), as MetaMoE (Jiang et al. 2026, arXiv:2605.14289) picks proxy samples that
// are relevant to an expert and diverse among themselves: the kernel L = diag(q) S diag(q) with
// q_i > 0 an item's relevance and S_ij = f_i · f_j the cosine similarity of its unit feature row,
// so det(L_Y) = Π q_i² · det(S_Y) rewards relevant items and penalises similar ones. Each step
// adds the item with the largest gain in log det(L_Y), updating every item's Cholesky row
// incrementally: O(N k) per step, O(N k²) in all, never a determinant.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace btx {

// Up to k items of features (N, D) (rows normalised here) and relevance quality (N, > 0), in the
// order greedy MAP picks them; it stops early when no item adds volume: every remaining item's
// residual after the span of those picked is below `eps` of its own squared norm.
std::vector<int64_t> greedy_dpp_map(const torch::Tensor& features, const torch::Tensor& quality,
                                    int64_t k, double eps = 1e-10);

}  // namespace btx
