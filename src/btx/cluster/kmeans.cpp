// Spherical k-means (kmeans.h) in torch ops: similarities are one (N, D) x (D, K) product (a
// sparse-dense product for tf-idf), centroid sums one index_add_. Loops run only over clusters
// (seeding, empty clusters) and iterations, never over points.
#include "btx/cluster/kmeans.h"

#include <cmath>

#include "btx/data/shards.h"
#include "btx/util/error.h"

namespace btx {

namespace {

// A uniform double in [0, 1) that is a pure function of (seed, n).
double uniform01(uint64_t seed, uint64_t n) {
  return static_cast<double>(mix64(seed ^ mix64(n + 0x9E3779B97F4A7C15ULL)) >> 11) * 0x1.0p-53;
}

torch::Tensor similarities(const torch::Tensor& X, const torch::Tensor& C) {
  return torch::mm(X, C.t().contiguous());  // (N, D) x (D, K) -> (N, K)
}

// Row i of X as a dense (D) vector.
torch::Tensor dense_row(const torch::Tensor& X, int64_t i) {
  if (!X.is_sparse()) return X[i].clone();
  const auto idx = X._indices();                        // (2, nnz)
  const auto in_row = idx[0].eq(i);                     // (nnz)
  const auto cols = idx[1].masked_select(in_row);       // (nnz_i)
  const auto vals = X._values().masked_select(in_row);  // (nnz_i)
  return torch::zeros({X.size(1)}, X.options().layout(torch::kStrided)).index_put_({cols}, vals);
}

// Sum of the rows of each cluster: (K, D).
torch::Tensor cluster_sums(const torch::Tensor& X, const torch::Tensor& labels, int64_t K) {
  const int64_t D = X.size(1);
  auto sums = torch::zeros({K, D}, torch::kFloat);
  if (!X.is_sparse()) return sums.index_add_(0, labels, X);
  const auto idx = X._indices();                                  // (2, nnz)
  const auto flat = labels.index_select(0, idx[0]) * D + idx[1];  // (nnz) into (K * D)
  sums.view({-1}).index_add_(0, flat, X._values());
  return sums;
}

torch::Tensor normalize_rows(const torch::Tensor& C) {
  return C / C.norm(2, 1, true).clamp_min(1e-12);  // (K, D)
}

// k-means++: the first centroid uniformly, each next one with probability proportional to the
// squared distance 2 - 2cos to the nearest centroid chosen so far.
torch::Tensor seed_centroids(const torch::Tensor& X, int64_t K, uint64_t seed) {
  const int64_t N = X.size(0);
  auto C = torch::zeros({K, X.size(1)}, torch::kFloat);  // (K, D)
  std::vector<bool> chosen(static_cast<size_t>(N), false);
  auto pick = static_cast<int64_t>(uniform01(seed, 0) * static_cast<double>(N));
  torch::Tensor min_d2;  // (N) float64
  for (int64_t j = 0; j < K; ++j) {
    if (j > 0) {
      const double total = min_d2.sum().item<double>();
      if (total > 1e-12) {
        const auto cum = min_d2.cumsum(0);  // (N)
        const auto target = torch::full({1}, uniform01(seed, j) * total, torch::kDouble);
        pick =
            torch::searchsorted(cum, target, /*out_int32=*/false, /*right=*/true).item<int64_t>();
        pick = std::min(pick, N - 1);
        while (chosen[pick] && pick + 1 < N) ++pick;  // rounding at the very end of `cum`
      } else {  // every point coincides with a centroid: take the first unchosen one
        pick = 0;
        while (chosen[pick]) ++pick;
      }
    }
    chosen[pick] = true;
    C[j].copy_(dense_row(X, pick));
    const auto d2 = (2.0 - 2.0 * similarities(X, C.slice(0, j, j + 1)).squeeze(1))
                        .clamp_min(0)
                        .to(torch::kDouble);  // (N)
    min_d2 = j == 0 ? d2 : torch::minimum(min_d2, d2);
  }
  return C;
}

KMeansResult lloyd(const torch::Tensor& X, torch::Tensor C, const KMeansOptions& opts) {
  const int64_t K = opts.k;
  KMeansResult r;
  torch::Tensor prev;
  for (int64_t it = 1; it <= opts.max_iters; ++it) {
    auto [best, labels] = similarities(X, C).max(1);  // (N), (N)
    if (prev.defined() && labels.equal(prev)) {
      r.converged = true;
      break;
    }
    const auto counts = torch::bincount(labels, {}, K);  // (K)
    const auto* cp = counts.data_ptr<int64_t>();
    for (int64_t k = 0; k < K; ++k) {
      if (cp[k] > 0) continue;
      const int64_t far = best.argmin().item<int64_t>();  // the worst-served point moves
      labels[far] = k;
      best[far] = 2.0;  // not picked again
    }
    C = normalize_rows(cluster_sums(X, labels, K));
    prev = labels;
    r.iterations = it;
  }
  const auto a = assign_to_centroids(X, C);
  r.centroids = C;
  r.labels = a.labels;
  r.inertia = (1.0 - a.similarity.to(torch::kDouble)).sum().item<double>();
  return r;
}

}  // namespace

Assignment assign_to_centroids(const torch::Tensor& X, const torch::Tensor& centroids) {
  BTX_CHECK(X.dim() == 2 && centroids.dim() == 2 && X.size(1) == centroids.size(1),
            "cluster assignment: points have shape {} but centroids have shape {} (the second "
            "dimensions must match)",
            c10::str(X.sizes()), c10::str(centroids.sizes()));
  auto [best, labels] = similarities(X, centroids.to(torch::kFloat)).max(1);  // (N), (N)
  return {labels, best};
}

KMeansResult spherical_kmeans(const torch::Tensor& X, const KMeansOptions& opts) {
  BTX_CHECK(X.dim() == 2 && X.scalar_type() == torch::kFloat,
            "k-means: points must be a 2-D float32 tensor, got {} of {}", X.dim(),
            c10::toString(X.scalar_type()));
  const int64_t N = X.size(0);
  BTX_CHECK(opts.k >= 2, "k-means: k must be >= 2, got {}", opts.k);
  BTX_CHECK(opts.k <= N, "k-means: k={} is more than the {} documents to cluster", opts.k, N);
  BTX_CHECK(opts.max_iters >= 1, "k-means: max_iters must be >= 1, got {}", opts.max_iters);
  BTX_CHECK(opts.restarts >= 1, "k-means: restarts must be >= 1, got {}", opts.restarts);
  const torch::Tensor Xc = X.is_sparse() ? X.coalesce() : X.contiguous();
  torch::NoGradGuard no_grad;
  KMeansResult best;
  for (int64_t r = 0; r < opts.restarts; ++r) {
    const auto C = seed_centroids(Xc, opts.k, derive_seed(opts.seed, "kmeans", r));
    KMeansResult res = lloyd(Xc, C, opts);
    res.restart = r;
    if (r == 0 || res.inertia < best.inertia) best = res;
  }
  return best;
}

ClusterScores score_clusters(const std::vector<int64_t>& labels, int64_t num_labels,
                             const std::vector<int64_t>& clusters, int64_t k) {
  BTX_CHECK(labels.size() == clusters.size(),
            "cluster scores: {} labels but {} cluster assignments", labels.size(), clusters.size());
  ClusterScores s;
  s.contingency.assign(num_labels, std::vector<int64_t>(k, 0));
  for (size_t i = 0; i < labels.size(); ++i) {
    BTX_CHECK(labels[i] >= 0 && labels[i] < num_labels && clusters[i] >= 0 && clusters[i] < k,
              "cluster scores: point {} has label {} / cluster {} outside [0, {}) / [0, {})", i,
              labels[i], clusters[i], num_labels, k);
    ++s.contingency[labels[i]][clusters[i]];
  }
  const auto N = static_cast<double>(labels.size());
  if (N == 0) return s;
  std::vector<double> a(num_labels, 0), b(k, 0);
  for (int64_t l = 0; l < num_labels; ++l) {
    for (int64_t c = 0; c < k; ++c) {
      a[l] += s.contingency[l][c];
      b[c] += s.contingency[l][c];
    }
  }
  double pure = 0, mi = 0, hu = 0, hv = 0;
  for (int64_t c = 0; c < k; ++c) {
    int64_t top = 0;
    for (int64_t l = 0; l < num_labels; ++l) top = std::max(top, s.contingency[l][c]);
    pure += top;
  }
  for (int64_t l = 0; l < num_labels; ++l) {
    for (int64_t c = 0; c < k; ++c) {
      const double n = s.contingency[l][c];
      if (n > 0) mi += n / N * std::log(N * n / (a[l] * b[c]));
    }
  }
  for (double x : a) hu -= x > 0 ? x / N * std::log(x / N) : 0;
  for (double x : b) hv -= x > 0 ? x / N * std::log(x / N) : 0;
  s.purity = pure / N;
  s.nmi = hu + hv > 1e-15 ? std::max(0.0, mi) / ((hu + hv) / 2) : 1.0;
  return s;
}

}  // namespace btx
