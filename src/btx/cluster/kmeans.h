// Spherical (cosine) k-means with k-means++ seeding, the clustering c-BTM uses to discover
// domains (Gururangan et al. 2023, arXiv:2303.14177), plus the scores that compare clusters with
// known labels (purity, NMI). Points are rows of a dense or sparse COO float tensor, N points x
// D dims, expected L2-normalised; K clusters. Deterministic for a seed; not balanced k-means.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace btx {

struct KMeansOptions {
  int64_t k = 8;            // K
  int64_t max_iters = 100;  // Lloyd iterations per restart (stops earlier once stable)
  int64_t restarts = 3;     // independent seedings; the lowest inertia wins
  uint64_t seed = 0;
};

struct KMeansResult {
  torch::Tensor centroids;  // (K, D) float32, unit rows
  torch::Tensor labels;     // (N) int64, the nearest centroid of each point
  double inertia = 0;       // sum over points of 1 - cos(point, its centroid)
  int64_t iterations = 0;   // Lloyd iterations of the winning restart
  int64_t restart = 0;      // which restart won
  bool converged = false;   // assignments stopped changing before max_iters
};

// Lloyd's algorithm on cosine similarity: assign each point to the centroid of highest cosine,
// move each centroid to the normalised sum of its points; an emptied cluster takes the point
// farthest from its own centroid. Seeding is k-means++ on the distance 2 - 2cos (squared
// Euclidean for unit vectors), drawn from derive_seed(seed, "kmeans", restart). Throws btx::Error
// when k < 2, k > N, or X is not a 2-D float tensor.
KMeansResult spherical_kmeans(const torch::Tensor& X /* (N, D) */, const KMeansOptions& opts);

// Nearest centroid (highest cosine) of each row of X. Ties go to the lower cluster index.
struct Assignment {
  torch::Tensor labels;      // (N) int64
  torch::Tensor similarity;  // (N) float32, cosine with the chosen centroid
};
Assignment assign_to_centroids(const torch::Tensor& X /* (N, D) */,
                               const torch::Tensor& centroids /* (K, D) */);

// How well clusters recover known labels. purity = (1/N) sum over clusters of the count of its
// most common label; NMI = I(labels; clusters) / mean(H(labels), H(clusters)) (1 when both are a
// single group). contingency[l][c] = points with label l in cluster c.
struct ClusterScores {
  double purity = 0;
  double nmi = 0;
  std::vector<std::vector<int64_t>> contingency;  // (L labels, K clusters)
};
ClusterScores score_clusters(const std::vector<int64_t>& labels, int64_t num_labels,
                             const std::vector<int64_t>& clusters, int64_t k);

}  // namespace btx
