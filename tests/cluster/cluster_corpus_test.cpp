// Discovered domains end to end on a tiny corpus of three very different vocabularies: k-means
// with k=3 recovers the domains (labels hidden from the fit), writes a valid corpus and manifest,
// and the saved cluster model puts new text of each kind in its cluster; c-BTM's routing of each
// prefix by its distance to the clusters; bad input is an error.
#include "btx/cluster/cluster_corpus.h"

#include <gtest/gtest.h>

#include "btx/cluster/cluster_model.h"
#include "btx/corpus/corpus.h"
#include "btx/data/tokenizer.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "model_util.h"
#include "test_util.h"
#include "tokenizer_util.h"

namespace btx {
namespace {

using testing::error_of;

class ClusterCorpusTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("btx-cluster");
    testing::write_text(*dir_ / "corpus/prose.txt",
                        testing::tagged_lines('P', testing::kProseWords, 30'000, 1));
    testing::write_text(*dir_ / "corpus/dict.txt",
                        testing::tagged_lines('W', testing::kDictWords, 30'000, 2));
    for (int i = 0; i < 40; ++i) {  // a folder domain: each file is one document
      testing::write_text(*dir_ / fmt::format("corpus/code/f{:02d}.py", i),
                          testing::tagged_lines('C', testing::kCodeWords, 600, 100 + i));
    }
  }
  static void TearDownTestSuite() { delete dir_; }
  static ClusterCorpusOptions options(const std::string& out) {
    ClusterCorpusOptions o;
    o.corpus = *dir_ / "corpus";
    o.out = *dir_ / out;
    o.kmeans.k = 3;
    o.kmeans.seed = 5;
    o.chunk_bytes = 512;
    o.max_docs_per_source = 30;  // fit on a sample, assign all
    return o;
  }
  // The cluster that holds most of `source`'s documents, from the report.
  static std::string home_of(const nlohmann::json& report, const std::string& source) {
    std::string best;
    int64_t most = -1;
    for (const auto& c : report["clusters"]) {
      const int64_t n = c["sources"].value(source, int64_t{0});
      if (n > most) most = n, best = c["name"].get<std::string>();
    }
    return best;
  }
  static testing::TempDir* dir_;
};
testing::TempDir* ClusterCorpusTest::dir_ = nullptr;

TEST_F(ClusterCorpusTest, TfidfRecoversDomainsAndWritesACorpus) {
  const auto o = options("out_tfidf");
  const nlohmann::json r = cluster_corpus(o);
  ASSERT_TRUE(r.contains("evaluation"));
  EXPECT_GE(r["evaluation"]["purity"].get<double>(), 0.95);
  EXPECT_GE(r["evaluation"]["nmi"].get<double>(), 0.9);
  const int64_t n = r["documents"].get<int64_t>();
  EXPECT_GT(n, 150);  // ~60 chunks per .txt domain + 40 files
  EXPECT_EQ(r["kmeans"]["fit_documents"].get<int64_t>(), 90);

  // The output is a corpus: one domain per cluster, every document written once.
  const auto domains = list_corpus(o.out);
  ASSERT_EQ(domains.size(), 3u);
  EXPECT_EQ(domains[0].name, "cluster_00");
  const auto manifest = nlohmann::json::parse(read_file(o.out / "manifest.json"));
  int64_t docs = 0;
  for (const auto& d : manifest["domains"]) {
    const std::string text = read_file(o.out / d["file"].get<std::string>());
    EXPECT_EQ(d["sha256"].get<std::string>(), sha256_hex(text));
    EXPECT_EQ(d["bytes"].get<size_t>(), text.size());
    docs += d["documents"].get<int64_t>();
  }
  EXPECT_EQ(docs, n);
  EXPECT_EQ(manifest["clustering"]["evaluation"], r["evaluation"]);
  const std::string prose_cluster = read_file(o.out / (home_of(r, "prose") + ".txt"));
  EXPECT_NE(prose_cluster.find("P#000000#"), std::string::npos);  // the first line survived

  // New text of each kind goes to its domain's cluster.
  const ClusterModel m = ClusterModel::load(o.out);
  EXPECT_EQ(m.k(), 3);
  const std::string prose = testing::tagged_lines('P', testing::kProseWords, 400, 77);
  const std::string dict = testing::tagged_lines('W', testing::kDictWords, 400, 78);
  const std::string code = testing::tagged_lines('C', testing::kCodeWords, 400, 79);
  const auto got = m.assign({prose, dict, code});
  EXPECT_EQ(m.names[got[0].first], home_of(r, "prose"));
  EXPECT_EQ(m.names[got[1].first], home_of(r, "dict"));
  EXPECT_EQ(m.names[got[2].first], home_of(r, "code"));
  EXPECT_NE(home_of(r, "prose"), home_of(r, "dict"));
  EXPECT_NE(home_of(r, "dict"), home_of(r, "code"));

  // Same options, same clusters; an earlier output of btx cluster may be replaced.
  const nlohmann::json again = cluster_corpus(o);
  EXPECT_EQ(again["clusters"], r["clusters"]);
}

TEST_F(ClusterCorpusTest, SeedEmbeddingRunsAndAssignsConsistently) {
  // A tiny random-weight LM with a tokenizer trained on the corpus: the path, not the quality.
  testing::train_test_tokenizer(*dir_ / "corpus", *dir_ / "seed/tokenizer.model", 400, 20'000);
  ModelConfig c = testing::small_model_config(400, 32, 64, 1, 2, 2, 64);
  torch::manual_seed(0);
  CausalLM lm(c);
  save_checkpoint(*dir_ / "seed/ck", {&lm, nullptr, nullptr, {}});

  auto o = options("out_seed");
  o.embed = "seed";
  o.seed_checkpoint = *dir_ / "seed/ck";
  o.seed_tokenizer = *dir_ / "seed/tokenizer.model";
  const nlohmann::json r = cluster_corpus(o);
  std::cout << "[ info ] seed-embedding purity on the tiny corpus (random weights): "
            << r["evaluation"]["purity"] << "\n";
  EXPECT_GE(r["evaluation"]["purity"].get<double>(), 0.8);
  EXPECT_EQ(list_corpus(o.out).size(), 3u);
  EXPECT_EQ(r["seed"]["seq_len"].get<int64_t>(), 64);

  // Each cluster's text, assigned as new text, lands in its own cluster.
  const ClusterModel m = ClusterModel::load(o.out);
  EXPECT_EQ(m.embed, "seed");
  for (const auto& d : list_corpus(o.out)) {
    const std::string text = read_file(d.files[0]);
    const auto first_doc = std::string_view(text).substr(0, text.find("\n\n") + 1);
    EXPECT_EQ(m.names[m.assign({first_doc})[0].first], d.name);
  }

  // c-BTM's routing of each prefix: at position t the embedding of tokens 0..t -- at a whole
  // document's last token, exactly the document's embedding the clusters were fitted on -- and
  // weights softmax(-(2 - 2 cos(x, c_j)) / temperature) over the clusters.
  {
    torch::NoGradGuard ng;
    const Tokenizer tok = Tokenizer::load(*dir_ / "seed/tokenizer.model");
    const std::string doc = testing::tagged_lines('P', testing::kProseWords, 300, 9);
    auto ids = tok.encode(doc);
    ids.resize(std::min<size_t>(ids.size(), 64));
    const auto n = static_cast<int64_t>(ids.size());
    const auto x = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).unsqueeze(0);
    const auto prefix = m.seed->prefix_embeddings(x);  // (1, n, C)
    ASSERT_EQ(prefix.sizes(), (std::vector<int64_t>{1, n, 32}));
    EXPECT_TRUE(torch::allclose(prefix[0][n - 1], m.vectors({doc})[0], 1e-4, 1e-5));
    CausalLM same = load_model(*dir_ / "seed/ck");
    const auto h = same->model->forward(x)[0];  // (n, C)
    const auto mean3 = h.narrow(0, 0, 3).mean(0);
    EXPECT_TRUE(torch::allclose(prefix[0][2], mean3 / mean3.norm(), 1e-4, 1e-5));
    for (double temperature : {0.1, 1.0}) {
      const auto logw = m.context_log_weights(x, temperature);  // (K, 1, n)
      ASSERT_EQ(logw.sizes(), (std::vector<int64_t>{3, 1, n}));
      const auto cos = m.centroids.to(torch::kFloat64).mv(prefix[0][5].to(torch::kFloat64));
      const auto want = torch::softmax(-(2.0 - 2.0 * cos) / temperature, 0);
      EXPECT_TRUE(torch::allclose(logw.select(1, 0).select(1, 5).exp(), want, 1e-5, 1e-6));
    }
  }
  // A tf-idf cluster model cannot route prefixes.
  {
    auto t = options("out_seed_tfidf");
    cluster_corpus(t);
    const ClusterModel tfidf = ClusterModel::load(t.out);
    EXPECT_NE(error_of([&] {
                tfidf.context_log_weights(torch::zeros({1, 4}, torch::kLong), 0.1);
              }).find("--embed seed"),
              std::string::npos);
  }

  // A changed checkpoint is detected.
  torch::manual_seed(1);
  CausalLM other(c);
  save_checkpoint(*dir_ / "seed/ck", {&other, nullptr, nullptr, {}});
  EXPECT_NE(error_of([&] { ClusterModel::load(o.out); }).find("changed"), std::string::npos);
}

TEST_F(ClusterCorpusTest, BadInputIsAClearError) {
  auto o = options("out_bad");
  o.kmeans.k = 1;
  EXPECT_NE(error_of([&] { cluster_corpus(o); }).find("--k must be >= 2, got 1"),
            std::string::npos);
  o.kmeans.k = 100000;
  EXPECT_NE(error_of([&] { cluster_corpus(o); }).find("--k 100000 is more than the"),
            std::string::npos);
  o.kmeans.k = 3;
  o.corpus = *dir_ / "missing";
  EXPECT_NE(error_of([&] { cluster_corpus(o); }).find("missing does not exist"), std::string::npos);
  o = options("out_bad");
  o.embed = "bert";
  EXPECT_NE(error_of([&] { cluster_corpus(o); }).find("--embed 'bert' is unknown"),
            std::string::npos);
  o = options("out_bad");
  o.out = *dir_ / "corpus";
  EXPECT_NE(error_of([&] { cluster_corpus(o); }).find("is the corpus folder"), std::string::npos);
  o.out = *dir_ / "unrelated";
  testing::write_text(o.out / "keep.txt", "precious");
  EXPECT_NE(error_of([&] { cluster_corpus(o); }).find("refusing to replace"), std::string::npos);
  EXPECT_TRUE(fs::exists(o.out / "keep.txt"));
  o = options("out_bad");
  o.domains = {"prose", "poetry"};
  EXPECT_NE(error_of([&] { cluster_corpus(o); }).find("'poetry' not found"), std::string::npos);
}

TEST_F(ClusterCorpusTest, BadClusterModelIsAClearError) {
  EXPECT_NE(error_of([&] { ClusterModel::load(*dir_ / "nothing"); }).find("is not a cluster model"),
            std::string::npos);
  const auto o = options("out_model");
  cluster_corpus(o);
  const fs::path json = o.out / "cluster_model.json";
  auto j = nlohmann::json::parse(read_file(json));
  j["embed"] = "word2vec";
  write_file_atomic(json, j.dump());
  EXPECT_NE(error_of([&] { ClusterModel::load(o.out); }).find("embed 'word2vec' is unknown"),
            std::string::npos);
  j["embed"] = "tfidf";
  j["names"] = {"a", "b"};
  write_file_atomic(json, j.dump());
  EXPECT_NE(
      error_of([&] { ClusterModel::load(o.out); }).find("cluster_model.json names 2 clusters"),
      std::string::npos);
  j["format_version"] = 99;
  write_file_atomic(json, j.dump());
  EXPECT_NE(error_of([&] { ClusterModel::load(o.out); }).find("format_version 99"),
            std::string::npos);
}

}  // namespace
}  // namespace btx
