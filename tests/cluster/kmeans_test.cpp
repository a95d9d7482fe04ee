// Spherical k-means (c-BTM's clustering): well-separated blobs are recovered exactly, the result
// is a pure function of the seed, sparse and dense points agree, bad k is an error; purity and
// NMI on hand-checked tables.
#include "btx/cluster/kmeans.h"

#include <gtest/gtest.h>

#include <cmath>

#include "btx/util/error.h"
#include "test_util.h"

namespace btx {
namespace {

// K blobs of `per` unit vectors each around K random directions in D dims: (K * per, D).
struct Blobs {
  torch::Tensor x;
  std::vector<int64_t> labels;
};
Blobs blobs(int64_t K, int64_t per, int64_t D, double noise, uint64_t seed) {
  torch::manual_seed(seed);
  const auto centers = torch::randn({K, D});  // (K, D)
  Blobs b;
  b.x = centers.repeat_interleave(per, 0) + noise * torch::randn({K * per, D});  // (N, D)
  b.x = b.x / b.x.norm(2, 1, true);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t i = 0; i < per; ++i) b.labels.push_back(k);
  return b;
}

std::vector<int64_t> to_vec(const torch::Tensor& t) {
  const auto c = t.contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

using testing::error_of;

TEST(KMeans, RecoversWellSeparatedBlobs) {
  const Blobs b = blobs(5, 40, 16, 0.15, 1);
  KMeansOptions o;
  o.k = 5;
  o.seed = 3;
  const KMeansResult r = spherical_kmeans(b.x, o);
  const ClusterScores s = score_clusters(b.labels, 5, to_vec(r.labels), 5);
  EXPECT_DOUBLE_EQ(s.purity, 1.0);
  EXPECT_NEAR(s.nmi, 1.0, 1e-9);
  EXPECT_TRUE(r.converged);
  EXPECT_EQ(r.centroids.sizes(), (std::vector<int64_t>{5, 16}));
  EXPECT_TRUE(torch::allclose(r.centroids.norm(2, 1), torch::ones({5}), 1e-5, 1e-5));
  // Inertia is the sum of 1 - cos to the own centroid.
  const auto cos = (b.x * r.centroids.index_select(0, r.labels)).sum(1);
  EXPECT_NEAR(r.inertia, (1 - cos).sum().item<double>(), 1e-3);
}

TEST(KMeans, DeterministicForASeed) {
  const Blobs b = blobs(4, 30, 8, 0.8, 2);  // overlapping blobs: the seed matters
  KMeansOptions o;
  o.k = 4;
  o.restarts = 2;
  o.seed = 11;
  const KMeansResult r1 = spherical_kmeans(b.x, o), r2 = spherical_kmeans(b.x, o);
  EXPECT_TRUE(torch::equal(r1.labels, r2.labels));
  EXPECT_TRUE(torch::equal(r1.centroids, r2.centroids));
  EXPECT_EQ(r1.inertia, r2.inertia);
}

TEST(KMeans, SparseAndDenseAgree) {
  const Blobs b = blobs(3, 20, 12, 0.1, 4);
  const auto sparse = b.x.masked_fill(b.x.abs() < 0.1, 0).to_sparse();  // (N, D) sparse
  const auto dense = sparse.to_dense();
  KMeansOptions o;
  o.k = 3;
  const KMeansResult rs = spherical_kmeans(sparse, o), rd = spherical_kmeans(dense, o);
  EXPECT_TRUE(torch::equal(rs.labels, rd.labels));
  EXPECT_TRUE(torch::allclose(rs.centroids, rd.centroids, 1e-5, 1e-6));
  const Assignment a = assign_to_centroids(sparse, rs.centroids);
  EXPECT_TRUE(torch::equal(a.labels, rs.labels));
}

TEST(KMeans, DuplicatePointsStillGiveKClusters) {
  auto x = torch::zeros({6, 3});
  x.index_put_({torch::indexing::Slice(0, 3), 0}, 1.0);
  x.index_put_({torch::indexing::Slice(3, 6), 1}, 1.0);  // two distinct points, three copies each
  KMeansOptions o;
  o.k = 3;
  const KMeansResult r = spherical_kmeans(x, o);
  EXPECT_EQ(r.labels.size(0), 6);
  EXPECT_NEAR(r.inertia, 0.0, 1e-6);
}

TEST(KMeans, BadInputIsAnError) {
  const Blobs b = blobs(2, 3, 4, 0.1, 5);
  KMeansOptions o;
  o.k = 1;
  EXPECT_NE(error_of([&] { spherical_kmeans(b.x, o); }).find("k must be >= 2, got 1"),
            std::string::npos);
  o.k = 7;
  EXPECT_NE(error_of([&] { spherical_kmeans(b.x, o); }).find("k=7 is more than the 6"),
            std::string::npos);
  o.k = 2;
  EXPECT_NE(error_of([&] { spherical_kmeans(b.x.to(torch::kDouble), o); }).find("float32"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              assign_to_centroids(b.x, torch::zeros({2, 5}));
            }).find("[2, 5]"),
            std::string::npos);
}

TEST(ClusterScores, HandComputed) {
  // A permutation of the labels is a perfect clustering.
  ClusterScores s = score_clusters({0, 0, 1, 1, 2}, 3, {2, 2, 0, 0, 1}, 3);
  EXPECT_DOUBLE_EQ(s.purity, 1.0);
  EXPECT_NEAR(s.nmi, 1.0, 1e-12);
  EXPECT_EQ(s.contingency[0][2], 2);
  // Clusters independent of the labels: purity 1/2, no shared information.
  s = score_clusters({0, 0, 1, 1}, 2, {0, 1, 0, 1}, 2);
  EXPECT_DOUBLE_EQ(s.purity, 0.5);
  EXPECT_NEAR(s.nmi, 0.0, 1e-12);
  // labels {0,0,1,1}, clusters {0,0,0,1}: purity 3/4; MI = 1/2 ln(4/3) + 1/4 ln(2/3) + 1/4 ln 2,
  // H(labels) = ln 2, H(clusters) = -(3/4 ln 3/4 + 1/4 ln 1/4).
  s = score_clusters({0, 0, 1, 1}, 2, {0, 0, 0, 1}, 2);
  EXPECT_DOUBLE_EQ(s.purity, 0.75);
  const double mi = 0.5 * std::log(4.0 / 3) + 0.25 * std::log(2.0 / 3) + 0.25 * std::log(2.0);
  const double hv = -(0.75 * std::log(0.75) + 0.25 * std::log(0.25));
  EXPECT_NEAR(s.nmi, mi / ((std::log(2.0) + hv) / 2), 1e-12);
  EXPECT_THROW(score_clusters({0, 3}, 2, {0, 0}, 2), Error);
}

}  // namespace
}  // namespace btx
