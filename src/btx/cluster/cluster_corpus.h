// `btx cluster`: discovered domains (c-BTM: Gururangan et al. 2023, arXiv:2303.14177). Splits a
// corpus's documents into K clusters by k-means over tf-idf or seed-LM embeddings, writes a new
// corpus with one domain per cluster plus the cluster model, and, when the input has several
// domains, scores how well the clusters recover them. Labels are never used for fitting.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/cluster/kmeans.h"
#include "btx/cluster/tfidf.h"

namespace btx {

namespace fs = std::filesystem;

inline constexpr int kClusteredCorpusFormatVersion = 1;

struct ClusterCorpusOptions {
  fs::path corpus;                   // corpus folder (see corpus/corpus.h)
  std::vector<std::string> domains;  // empty = all domains of the corpus
  fs::path out;                      // the clustered corpus; replaced atomically
  std::string embed = "tfidf";       // "tfidf" or "seed"
  fs::path seed_checkpoint;          // embed == "seed": checkpoint folder ...
  fs::path seed_tokenizer;           // ... and its tokenizer.model
  int64_t seq_len = 0;               // seed: tokens per document (0: the model's context)
  int64_t batch_size = 4;            // seed: documents per forward pass (small is fast on CPU)
  TfidfOptions tfidf;
  KMeansOptions kmeans;  // k, iterations, restarts, seed (the seed also draws the fit sample)
  // A document is a file of a folder domain, or a chunk of about chunk_bytes (ending at a line
  // end) of a .txt domain, whose document boundaries the corpus does not keep.
  int64_t chunk_bytes = 8192;
  int64_t max_docs_per_source = 2000;  // fit on at most this many per domain (0: all)
  int64_t assign_batch = 2048;         // tf-idf: documents vectorised at once when assigning
  int threads = 2;                     // tf-idf threads; the result does not depend on it
};

// Fits the clusters on a seeded sample, assigns every document, and writes opts.out:
// cluster_XX.txt (documents separated by a blank line), manifest.json (per cluster: bytes,
// sha256, documents, the source domains of its documents; "clustering": the returned report) and
// the cluster model cluster_model.{json,safetensors} (see cluster_model.h). Returns the report:
// settings, inertia, cluster sizes, timings and, with two or more input domains, "evaluation"
// {purity, nmi, contingency}. Throws btx::Error on bad options (naming the option and value), a
// missing corpus, k larger than the documents, or an --out that is the corpus or an unrelated
// non-empty folder.
nlohmann::json cluster_corpus(const ClusterCorpusOptions& opts);

// The name of cluster c of k: "cluster_07" (two digits at least, as many as k - 1 has).
std::string cluster_name(int64_t c, int64_t k);

// The report as a few readable lines and the label x cluster table.
std::string format_cluster_report(const nlohmann::json& report);

}  // namespace btx
