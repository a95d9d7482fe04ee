// c-BTM's cluster routing end to end at tiny size: `btx cluster --embed seed` fits clusters on
// the run's corpus with its seed; an ensemble whose experts are named as the clusters routes
// each position by its prefix's distance to them (`--prior cluster`); evaluation adds the
// seed's forward to the cost and reports each domain's mean weights, which the context decides
// (code's text goes mostly to the code cluster's expert). Clusters that name none of
// the experts, or a tf-idf cluster model, are refused at merge time with nothing written.
#include <gtest/gtest.h>

#include "btx/run/experts.h"
#include "btx/util/fs.h"
#include "e2e_util.h"
#include "forest_fixture.h"

namespace btx {
namespace {

using testing::run_btx;

class ClusterRoutingTest : public testing::ForestTest<ClusterRoutingTest> {};

TEST_F(ClusterRoutingTest, EnsembleRoutedByTheContextsNearestClusters) {
  RunDir run = fresh_run("cluster");
  const std::string r_ = " --run " + run.root.string();
  const fs::path corpus = run.root.parent_path() / "corpus";
  auto r = run_btx("cluster --corpus " + corpus.string() + " --k 3 --embed seed" + r_ +
                   " --seed 3 --chunk-bytes 1024 --out " + (run.root / "clusters").string());
  ASSERT_EQ(r.code, 0) << r.output;
  // Clusters named by their generic names route no expert of this run.
  r = run_btx("merge" + r_ +
              " --method ensemble --prior cluster --cluster-model clusters --name c");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("no cluster is named 'code'"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(run.root / "merged/c"));

  // As if the experts had been trained on the clusters: each cluster named after the domain
  // most of its documents came from (the clustering's own report).
  const auto manifest = read_json_file(run.root / "clusters/manifest.json");
  auto model = read_json_file(run.root / "clusters/cluster_model.json");
  std::vector<std::string> names;
  for (const auto& c : manifest["clustering"]["clusters"]) {
    std::string best;
    int64_t most = -1;
    for (const auto& [source, n] : c["sources"].items()) {
      if (n.get<int64_t>() > most) most = n.get<int64_t>(), best = source;
    }
    names.push_back(best);
  }
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  ASSERT_EQ(sorted, (std::vector<std::string>{"code", "prose", "verse"}));
  model["names"] = names;
  write_file_atomic(run.root / "clusters/cluster_model.json", model.dump(1));

  r = run_btx("merge" + r_ +
              " --method ensemble --prior cluster --cluster-model clusters --name c");
  ASSERT_EQ(r.code, 0) << r.output;
  ASSERT_EQ(run_btx("merge" + r_ + " --method ensemble --prior uniform --name u").code, 0);
  const auto merge = read_json_file(run.root / "merged/c/merge.json");
  EXPECT_EQ(merge["result"]["cluster_model"], fs::absolute(run.root / "clusters").string());
  r = run_btx("eval" + r_ + " --model merged/c,merged/u");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto c = read_json_file(run.eval("c"));
  const auto u = read_json_file(run.eval("u"));
  // The seed's forward is part of the cost.
  EXPECT_GT(c["flops_per_token"].get<int64_t>(), u["flops_per_token"].get<int64_t>());
  for (const char* d : {"code", "prose", "verse"}) {
    const auto& info = c["domains"][d]["model"];
    EXPECT_EQ(info["prior_mode"], "cluster");
    double sum = 0, low = 1, high = 0;
    for (const auto& [name, w] : info["mean_weights"].items()) {
      sum += w.get<double>();
      low = std::min(low, w.get<double>());
      high = std::max(high, w.get<double>());
    }
    EXPECT_NEAR(sum, 1.0, 1e-6) << d;
    // The context decides: no domain is routed uniformly.
    EXPECT_GT(high - low, 0.2) << d << " " << info["mean_weights"].dump();
  }
  // Code, the most distinct vocabulary, goes mostly to the code cluster's expert (prose and
  // verse share words, and their clusters share their text).
  const auto& code = c["domains"]["code"]["model"]["mean_weights"];
  for (const char* other : {"prose", "verse"}) {
    EXPECT_GT(code["code"].get<double>(), code[other].get<double>()) << code.dump();
  }

  // A tf-idf cluster model reads whole documents: it cannot route each prefix.
  r = run_btx("cluster --corpus " + corpus.string() + " --k 3 --out " +
              (run.root / "tfidf").string());
  ASSERT_EQ(r.code, 0) << r.output;
  auto tfidf = read_json_file(run.root / "tfidf/cluster_model.json");
  tfidf["names"] = names;
  write_file_atomic(run.root / "tfidf/cluster_model.json", tfidf.dump(1));
  r = run_btx("merge" + r_ + " --method ensemble --prior cluster --cluster-model tfidf --name t");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--embed seed"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(run.root / "merged/t"));
}

}  // namespace
}  // namespace btx
