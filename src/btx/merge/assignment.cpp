#include "btx/merge/assignment.h"

#include <limits>

#include "btx/util/error.h"

namespace btx {

std::vector<int64_t> min_cost_assignment(const torch::Tensor& cost_in) {
  BTX_CHECK(cost_in.dim() == 2 && cost_in.size(0) == cost_in.size(1) && cost_in.size(0) > 0,
            "assignment: expected a non-empty square cost matrix, got shape {}",
            fmt::join(cost_in.sizes(), "x"));
  const torch::Tensor cost = cost_in.to(torch::kCPU, torch::kFloat64).contiguous();
  BTX_CHECK(torch::isfinite(cost).all().item<bool>(),
            "assignment: the cost matrix has values that are not finite");
  const int64_t n = cost.size(0);
  const double* c = cost.data_ptr<double>();
  const double inf = std::numeric_limits<double>::infinity();
  // 1-based: column 0 is the virtual start of each augmenting path. u, v: dual potentials of rows
  // and columns; row_of[j]: the row holding column j (0: none); way[j]: the previous column on
  // the shortest path to j.
  std::vector<double> u(n + 1, 0.0), v(n + 1, 0.0), dist(n + 1);
  std::vector<int64_t> row_of(n + 1, 0), way(n + 1, 0);
  std::vector<char> used(n + 1);
  for (int64_t i = 1; i <= n; ++i) {
    row_of[0] = i;
    int64_t j0 = 0;
    std::fill(dist.begin(), dist.end(), inf);
    std::fill(used.begin(), used.end(), 0);
    do {  // grow the tree of shortest paths from row i until it reaches a free column
      used[j0] = 1;
      const int64_t i0 = row_of[j0];
      double delta = inf;
      int64_t j1 = 0;
      for (int64_t j = 1; j <= n; ++j) {
        if (used[j]) continue;
        const double reduced = c[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
        if (reduced < dist[j]) {
          dist[j] = reduced;
          way[j] = j0;
        }
        if (dist[j] < delta) {
          delta = dist[j];
          j1 = j;
        }
      }
      for (int64_t j = 0; j <= n; ++j) {  // potentials keep every reduced cost >= 0
        if (used[j]) {
          u[row_of[j]] += delta;
          v[j] -= delta;
        } else {
          dist[j] -= delta;
        }
      }
      j0 = j1;
    } while (row_of[j0] != 0);
    do {  // flip the path: each column on it goes to the row before
      const int64_t j1 = way[j0];
      row_of[j0] = row_of[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int64_t> assignment(n);
  for (int64_t j = 1; j <= n; ++j) assignment[row_of[j] - 1] = j - 1;
  return assignment;
}

std::vector<int64_t> max_score_assignment(const torch::Tensor& score) {
  return min_cost_assignment(-score.to(torch::kFloat64));
}

}  // namespace btx
