// The linear assignment problem, exactly: which column each row gets so that the total cost is
// least, every column used once. Symphony-MoE (Wang et al. 2025, arXiv:2509.18542) aligns the FFN
// neurons of experts that do not share a seed this way before merging them: the neurons of each
// expert permuted to those of an anchor expert that they match best on calibration text.
//
// The Hungarian method in its shortest-augmenting-path form (Kuhn 1955, Munkres 1957; the
// O(n^3) potentials formulation of Jonker & Volgenant 1987): rows are added one at a time, each
// by a Dijkstra-like search over reduced costs, which stay non-negative under the dual potentials.
// Exact for any finite costs. Debian packages no C or C++ solver (only Perl's and Python's
// munkres), and dlib's takes integer costs only, so it is written here.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace btx {

// `cost` (n, n), finite: assignment[i] is the column of row i, minimising the sum of
// cost[i][assignment[i]]; a permutation of 0..n-1. Ties go to any optimum. An empty or
// non-square matrix, or one with a value that is not finite, is an error.
std::vector<int64_t> min_cost_assignment(const torch::Tensor& cost);

// The same maximising the total of `score` (n, n): min_cost_assignment(-score).
std::vector<int64_t> max_score_assignment(const torch::Tensor& score);

}  // namespace btx
