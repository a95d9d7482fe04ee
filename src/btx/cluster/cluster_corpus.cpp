// Clustering a corpus (cluster_corpus.h): collect documents, fit the embedder and k-means on a
// seeded per-domain sample, assign every document in batches, write the clustered corpus and its
// manifest in one atomic folder, and score the clusters against the domain names (evaluation only).
#include "btx/cluster/cluster_corpus.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "btx/cluster/cluster_model.h"
#include "btx/corpus/corpus.h"
#include "btx/data/shards.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct DocRef {
  int32_t source;
  int32_t chunk;
};

struct Documents {
  std::vector<DomainText> sources;
  std::vector<DocRef> refs;  // every document, in corpus order
  std::string_view text(const DocRef& r) const { return sources[r.source].chunk(r.chunk); }
};

Documents collect_documents(const ClusterCorpusOptions& o) {
  Documents d;
  for (const auto& dom : select_domains(list_corpus(o.corpus), o.domains, o.corpus)) {
    // A folder domain keeps its files as documents: one chunk per file, however long.
    const bool folder = fs::is_directory(o.corpus / dom.name);
    d.sources.push_back(read_domain_chunks(dom, folder ? (int64_t{1} << 50) : o.chunk_bytes));
    const auto s = static_cast<int32_t>(d.sources.size() - 1);
    for (size_t c = 0; c < d.sources.back().chunks.size(); ++c)
      d.refs.push_back({s, static_cast<int32_t>(c)});
  }
  return d;
}

// At most `cap` documents per source, drawn by a seeded permutation, kept in corpus order: the
// indices into d.refs.
std::vector<size_t> fit_sample(const Documents& d, int64_t cap, uint64_t seed) {
  std::vector<size_t> out;
  size_t first = 0;  // index in d.refs of the source's first document
  for (size_t s = 0; s < d.sources.size(); ++s) {
    const size_t n = d.sources[s].chunks.size();
    std::vector<size_t> pick =
        seeded_permutation(n, derive_seed(seed, "cluster/sample/" + d.sources[s].name));
    if (cap > 0 && pick.size() > static_cast<size_t>(cap)) pick.resize(cap);
    std::sort(pick.begin(), pick.end());
    for (size_t c : pick) out.push_back(first + c);
    first += n;
  }
  return out;
}

std::vector<std::string_view> views(const Documents& d, size_t begin, size_t end) {
  std::vector<std::string_view> v;
  for (size_t i = begin; i < end; ++i) v.push_back(d.text(d.refs[i]));
  return v;
}

void check_options(const ClusterCorpusOptions& o) {
  BTX_CHECK(o.embed == "tfidf" || o.embed == "seed",
            "cluster: --embed '{}' is unknown (expected tfidf or seed)", o.embed);
  BTX_CHECK(o.embed != "seed" || !o.seed_checkpoint.empty(),
            "cluster: --embed seed needs a seed checkpoint (--run RUN or --checkpoint DIR)");
  BTX_CHECK(o.kmeans.k >= 2, "cluster: --k must be >= 2, got {}", o.kmeans.k);
  BTX_CHECK(o.chunk_bytes >= 64, "cluster: --chunk-bytes must be >= 64, got {}", o.chunk_bytes);
  BTX_CHECK(o.max_docs_per_source >= 0, "cluster: --max-docs-per-source must be >= 0, got {}",
            o.max_docs_per_source);
  BTX_CHECK(o.assign_batch >= 1, "cluster: assign_batch must be >= 1, got {}", o.assign_batch);
  BTX_CHECK(!o.out.empty(), "cluster: no output folder given (--out)");
  const fs::path corpus = fs::weakly_canonical(o.corpus), out = fs::weakly_canonical(o.out);
  for (fs::path p = out; !p.empty() && p != p.root_path(); p = p.parent_path()) {
    BTX_CHECK(p != corpus, "cluster: --out {} is the corpus folder {} or inside it", o.out.string(),
              o.corpus.string());
  }
  if (fs::exists(o.out) && !fs::is_empty(o.out)) {
    bool ours = false;
    try {
      ours = nlohmann::json::parse(read_file(o.out / "manifest.json")).contains("clustering");
    } catch (const std::exception&) {
    }
    BTX_CHECK(ours,
              "cluster: --out {} exists and is not a clustered corpus (no manifest.json with "
              "\"clustering\"); refusing to replace it, choose another folder",
              o.out.string());
  }
}

}  // namespace

std::string cluster_name(int64_t c, int64_t k) {
  const int width = std::max<int>(2, static_cast<int>(fmt::format("{}", k - 1).size()));
  return fmt::format("cluster_{:0{}}", c, width);
}

nlohmann::json cluster_corpus(const ClusterCorpusOptions& o) {
  check_options(o);
  const auto t0 = Clock::now();
  const Documents docs = collect_documents(o);
  const auto K = o.kmeans.k;
  const auto N = static_cast<int64_t>(docs.refs.size());
  BTX_CHECK(K <= N, "cluster: --k {} is more than the {} documents of corpus {}", K, N,
            o.corpus.string());
  const std::vector<size_t> sample = fit_sample(docs, o.max_docs_per_source, o.kmeans.seed);
  BTX_CHECK(K <= static_cast<int64_t>(sample.size()),
            "cluster: --k {} is more than the {} documents sampled for fitting; raise "
            "--max-docs-per-source ({})",
            K, sample.size(), o.max_docs_per_source);
  const double load_s = seconds_since(t0);
  spdlog::info("cluster: {} documents from {} domains of {}; fitting {} k-means on {}", N,
               docs.sources.size(), o.corpus.string(), o.embed, sample.size());

  // Fit: embedder, then k-means. Only the documents' text is seen, never their domain.
  const auto t1 = Clock::now();
  ClusterModel model;
  model.embed = o.embed;
  torch::Tensor X;            // (n, D), n = fit documents
  torch::Tensor all_vectors;  // (N, C): seed vectors of every document, embedded once
  double embed_s = 0;
  const auto sample_ids = torch::tensor(std::vector<int64_t>(sample.begin(), sample.end()));
  if (o.embed == "tfidf") {
    std::vector<std::string_view> fit_docs;
    for (size_t i : sample) fit_docs.push_back(docs.text(docs.refs[i]));
    model.tfidf = TfidfVectorizer::fit(fit_docs, o.tfidf, o.threads);
    X = model.tfidf->transform(fit_docs, o.threads);  // (n, F) sparse
  } else {
    auto seed = std::make_shared<SeedEmbedder>(o.seed_checkpoint, o.seed_tokenizer, o.seq_len,
                                               o.batch_size);
    const auto te = Clock::now();
    all_vectors = seed->embed(views(docs, 0, N));  // (N, C)
    embed_s = seconds_since(te);
    model.seed = std::move(seed);
    X = all_vectors.index_select(0, sample_ids);  // (n, C)
  }
  const KMeansResult km = spherical_kmeans(X, o.kmeans);
  model.centroids = km.centroids;  // (K, D)
  for (int64_t c = 0; c < K; ++c) model.names.push_back(cluster_name(c, K));
  model.info = {{"k", K},
                {"seed", o.kmeans.seed},
                {"restarts", o.kmeans.restarts},
                {"max_iters", o.kmeans.max_iters},
                {"iterations", km.iterations},
                {"converged", km.converged},
                {"inertia", km.inertia},
                {"fit_documents", sample.size()},
                {"max_docs_per_source", o.max_docs_per_source},
                {"chunk_bytes", o.chunk_bytes}};
  const double fit_s = seconds_since(t1);

  // Assign every document (tf-idf: a batch at a time; seed: the vectors made above).
  const auto t2 = Clock::now();
  std::vector<int64_t> cluster(N), source(N);
  for (int64_t i = 0; i < N; ++i) source[i] = docs.refs[i].source;
  if (all_vectors.defined()) {
    const auto labels = assign_to_centroids(all_vectors, model.centroids).labels;
    std::copy(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + N, cluster.begin());
  }
  for (int64_t b = 0; b < N && !all_vectors.defined(); b += o.assign_batch) {
    const int64_t e = std::min(N, b + o.assign_batch);
    const auto got = model.assign(views(docs, b, e), o.threads);
    for (int64_t i = b; i < e; ++i) cluster[i] = got[i - b].first;
  }
  const double assign_s = seconds_since(t2);

  // Write the clustered corpus: one <cluster>.txt per non-empty cluster.
  const auto t3 = Clock::now();
  const auto S = static_cast<int64_t>(docs.sources.size());
  const ClusterScores scores = score_clusters(source, S, cluster, K);
  std::vector<std::string> source_names;
  for (const auto& src : docs.sources) source_names.push_back(src.name);
  nlohmann::json entries = nlohmann::json::array(), sizes = nlohmann::json::array(), report;
  write_dir_atomic(o.out, [&](const fs::path& tmp) {
    for (int64_t c = 0; c < K; ++c) {
      std::string text;
      int64_t n = 0;
      for (int64_t i = 0; i < N; ++i) {
        if (cluster[i] != c) continue;
        if (n++ > 0) text += '\n';  // a blank line between documents
        text += docs.text(docs.refs[i]);
        if (text.back() != '\n') text += '\n';
      }
      nlohmann::json from = nlohmann::json::object();
      for (int64_t s = 0; s < S; ++s) {
        if (scores.contingency[s][c] > 0) from[docs.sources[s].name] = scores.contingency[s][c];
      }
      sizes.push_back(
          {{"name", model.names[c]}, {"documents", n}, {"bytes", text.size()}, {"sources", from}});
      if (n == 0) {
        spdlog::warn("cluster: {} got no documents; it is left out of the corpus", model.names[c]);
        continue;
      }
      write_file_atomic(tmp / (model.names[c] + ".txt"), text);
      entries.push_back({{"name", model.names[c]},
                         {"file", model.names[c] + ".txt"},
                         {"bytes", text.size()},
                         {"sha256", sha256_hex(text)},
                         {"documents", n},
                         {"sources", from},
                         {"description", fmt::format("{} k-means cluster {} of {}", o.embed, c, K)},
                         {"format_version", kClusteredCorpusFormatVersion},
                         {"packages", nlohmann::json::object()},
                         {"novel", false}});
    }
    model.save(tmp);
    report = {{"corpus", o.corpus.string()},
              {"out", o.out.string()},
              {"embed", o.embed},
              {"k", K},
              {"documents", N},
              {"chunk_bytes", o.chunk_bytes},
              {"sources", source_names},
              {"kmeans", model.info},
              {"clusters", sizes}};
    if (o.embed == "tfidf") report["features"] = model.tfidf->num_features();
    if (o.embed == "seed") report["seed"] = model.seed->to_json();
    if (S >= 2) {
      nlohmann::json table = nlohmann::json::object();
      for (int64_t s = 0; s < S; ++s) table[source_names[s]] = scores.contingency[s];
      report["evaluation"] = {
          {"purity", scores.purity}, {"nmi", scores.nmi}, {"contingency", table}};
    }
    report["seconds"] = {{"load", load_s},
                         {"fit", fit_s},
                         {"embed_all", embed_s},
                         {"assign", assign_s},
                         {"write", seconds_since(t3)},
                         {"total", seconds_since(t0)}};
    const nlohmann::json manifest = {{"format_version", kClusteredCorpusFormatVersion},
                                     {"domains", entries},
                                     {"clustering", report}};
    write_file_atomic(tmp / "manifest.json", manifest.dump(2) + "\n");
  });
  return report;
}

std::string format_cluster_report(const nlohmann::json& r) {
  const auto& km = r.at("kmeans");
  std::string s = fmt::format(
      "clustered {} documents of {} domain(s) into {} clusters: {} k-means, fit on {} documents, "
      "{} iterations ({}), inertia {:.2f}, {:.1f} s\n",
      r.at("documents").get<int64_t>(), r.at("sources").size(), r.at("k").get<int64_t>(),
      r.at("embed").get<std::string>(), km.at("fit_documents").get<int64_t>(),
      km.at("iterations").get<int64_t>(), km.at("converged").get<bool>() ? "converged" : "max",
      km.at("inertia").get<double>(), r.at("seconds").at("total").get<double>());
  const auto& clusters = r.at("clusters");
  if (r.contains("evaluation")) {
    const auto& ev = r.at("evaluation");
    s += fmt::format("{:<16}", "domain \\ cluster");
    for (size_t c = 0; c < clusters.size(); ++c) s += fmt::format(" {:>6}", fmt::format("c{}", c));
    s += "\n";
    for (const auto& [name, row] : ev.at("contingency").items()) {
      s += fmt::format("{:<16}", name.substr(0, 16));
      for (const auto& n : row) s += fmt::format(" {:>6}", n.get<int64_t>());
      s += "\n";
    }
    s += fmt::format(
        "purity {:.3f}  NMI {:.3f}  (domain labels used only for this evaluation, never for "
        "fitting)\n",
        ev.at("purity").get<double>(), ev.at("nmi").get<double>());
  } else {
    for (const auto& c : clusters)
      s += fmt::format("  {:<12} {:>8} documents {:>12} bytes\n", c.at("name").get<std::string>(),
                       c.at("documents").get<int64_t>(), c.at("bytes").get<int64_t>());
  }
  s += fmt::format(
      "wrote {} (a corpus, one domain per cluster, and its cluster model cluster_model.*)\n",
      r.at("out").get<std::string>());
  return s;
}

}  // namespace btx
