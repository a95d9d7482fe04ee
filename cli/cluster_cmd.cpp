// `btx cluster` and `btx cluster assign`: discovered domains (c-BTM: Gururangan et al. 2023,
// arXiv:2303.14177). Argument parsing and printing only; the work is in btx/cluster/
// (cluster_corpus.h fits and writes the clustered corpus, cluster_model.h assigns new text).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>

#include "btx/cluster/cluster_corpus.h"
#include "btx/cluster/cluster_model.h"
#include "btx/corpus/corpus.h"
#include "btx/data/shards.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "cli/commands.h"

namespace btx::cli {

namespace {

struct ClusterArgs {
  ClusterCorpusOptions opts;
  std::string corpus, out, run, checkpoint, tokenizer;
  bool json = false;
};

struct AssignArgs {
  std::string model;
  std::vector<std::string> text;
  int64_t chunk_bytes = 0;
  int64_t batch_size = 4;
  int threads = 0;
  bool json = false;
};

// The seed checkpoint and tokenizer: --checkpoint/--tokenizer, else RUN/seed and
// RUN/tokenizer.model; a checkpoint's tokenizer is looked for beside it, then one folder up.
void resolve_seed(ClusterArgs& a) {
  if (a.opts.embed != "seed") return;
  BTX_CHECK(!a.run.empty() || !a.checkpoint.empty(),
            "cluster: --embed seed needs --run RUN (uses RUN/seed) or --checkpoint DIR");
  const fs::path ckpt = !a.checkpoint.empty() ? fs::path(a.checkpoint) : fs::path(a.run) / "seed";
  fs::path tok = a.tokenizer;
  if (tok.empty()) {
    std::vector<fs::path> candidates = {ckpt / "tokenizer.model",
                                        ckpt.parent_path() / "tokenizer.model"};
    if (!a.run.empty()) candidates.insert(candidates.begin(), fs::path(a.run) / "tokenizer.model");
    for (const auto& p : candidates) {
      if (fs::is_regular_file(p)) {
        tok = p;
        break;
      }
    }
    BTX_CHECK(!tok.empty(), "cluster: no tokenizer.model found for checkpoint {}: pass --tokenizer",
              ckpt.string());
  }
  a.opts.seed_checkpoint = ckpt;
  a.opts.seed_tokenizer = tok;
}

void run_assign(const AssignArgs& a) {
  BTX_CHECK(a.chunk_bytes == 0 || a.chunk_bytes >= 64,
            "cluster assign: --chunk-bytes must be 0 (whole files) or >= 64, got {}",
            a.chunk_bytes);
  const ClusterModel model = ClusterModel::load(a.model, a.batch_size);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& f : a.text) {
    BTX_CHECK(fs::is_regular_file(f), "cluster assign: --text {} is not a file", f);
    CorpusDomain dom{fs::path(f).filename().string(), {f}, fs::file_size(f)};
    const DomainText text = read_domain_chunks(dom, a.chunk_bytes > 0 ? a.chunk_bytes : 1LL << 50);
    std::vector<std::string_view> docs;
    for (size_t i = 0; i < text.chunks.size(); ++i) docs.push_back(text.chunk(i));
    if (docs.empty()) docs.push_back("");  // an empty file still gets a line
    const auto got = model.assign(docs);
    for (size_t i = 0; i < got.size(); ++i) {
      out.push_back({{"file", f},
                     {"chunk", i},
                     {"bytes", docs[i].size()},
                     {"cluster", model.names[got[i].first]},
                     {"similarity", got[i].second}});
    }
  }
  if (a.json) {
    std::cout << out.dump(2) << "\n";
    return;
  }
  for (const auto& r : out) {
    const std::string where = a.chunk_bytes > 0 ? fmt::format("{}#{}", r["file"].get<std::string>(),
                                                              r["chunk"].get<size_t>())
                                                : r["file"].get<std::string>();
    fmt::print("{}\t{}\t{:.4f}\n", where, r["cluster"].get<std::string>(),
               r["similarity"].get<float>());
  }
}

}  // namespace

std::vector<Command> add_cluster_commands(CLI::App& app) {
  auto a = std::make_shared<ClusterArgs>();
  auto* cmd = app.add_subcommand(
      "cluster",
      "Discover domains (c-BTM): split a corpus's documents into K clusters by k-means over "
      "tf-idf or seed-model embeddings, write a corpus with one domain per cluster and the "
      "cluster model (domain labels are only used to score the clusters, never to fit them)");
  cmd->require_subcommand(0, 1);
  cmd->add_option("--corpus", a->corpus, "Corpus folder (one .txt or sub-folder per domain)");
  cmd->add_option("--k", a->opts.kmeans.k, "Number of clusters K (required)");
  cmd->add_option("--out", a->out, "Folder for the clustered corpus (required)");
  cmd->add_option("--domains", a->opts.domains, "Only these domains of --corpus")->delimiter(',');
  cmd->add_option("--embed", a->opts.embed, "Document vectors: tfidf, or seed (mean hidden state)")
      ->check(CLI::IsMember({"tfidf", "seed"}))
      ->capture_default_str();
  cmd->add_option("--run", a->run, "Run folder for --embed seed (RUN/seed, RUN/tokenizer.model)");
  cmd->add_option("--checkpoint", a->checkpoint, "Checkpoint for --embed seed instead of --run");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.model for --checkpoint");
  cmd->add_option("--seq-len", a->opts.seq_len, "Tokens per document for --embed seed (0: context)")
      ->capture_default_str();
  cmd->add_option("--batch-size", a->opts.batch_size, "Documents per forward pass (seed)")
      ->capture_default_str();
  cmd->add_option("--features", a->opts.tfidf.features, "tf-idf vocabulary size (top by df)")
      ->capture_default_str();
  cmd->add_option("--min-df", a->opts.tfidf.min_df, "tf-idf: minimum document frequency")
      ->capture_default_str();
  cmd->add_option("--chunk-bytes", a->opts.chunk_bytes,
                  "Document size for .txt domains (folder domains: one file = one document)")
      ->capture_default_str();
  cmd->add_option("--max-docs-per-source", a->opts.max_docs_per_source,
                  "Fit on at most this many documents per domain (0: all); all are assigned")
      ->capture_default_str();
  cmd->add_option("--restarts", a->opts.kmeans.restarts, "k-means++ restarts (best inertia wins)")
      ->capture_default_str();
  cmd->add_option("--max-iters", a->opts.kmeans.max_iters, "Lloyd iterations per restart")
      ->capture_default_str();
  cmd->add_option("--seed", a->opts.kmeans.seed, "Random seed (fit sample and seeding)")
      ->capture_default_str();
  cmd->add_option("--threads", a->opts.threads, "tf-idf threads")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print the report as JSON");

  auto b = std::make_shared<AssignArgs>();
  auto* assign = cmd->add_subcommand(
      "assign", "Assign new text to the clusters of a saved cluster model (nearest centroid)");
  assign
      ->add_option("--model", b->model,
                   "Cluster model: the --out folder of `btx cluster` (or its cluster_model.json)")
      ->required();
  assign->add_option("--text", b->text, "Text files to assign")->required();
  assign
      ->add_option("--chunk-bytes", b->chunk_bytes,
                   "Assign chunks of about this many bytes (0: each whole file)")
      ->capture_default_str();
  assign->add_option("--batch-size", b->batch_size, "Documents per forward pass (seed)")
      ->capture_default_str();
  assign->add_flag("--json", b->json, "Print JSON");

  // `assign` first: when it runs, `cluster` counts as parsed too.
  assign->add_option("--threads", b->threads, "Torch threads (0: torch's default)")
      ->capture_default_str();
  return {{assign,
           [b] {
             if (b->threads > 0) torch::set_num_threads(b->threads);
             run_assign(*b);
           }},
          {cmd, [a, cmd] {
             BTX_CHECK(!a->corpus.empty() && !a->out.empty() && cmd->count("--k") > 0,
                       "cluster: --corpus, --k and --out are required (or use `btx cluster "
                       "assign`)");
             if (a->json) spdlog::set_level(spdlog::level::warn);  // stdout is the JSON alone
             a->opts.corpus = a->corpus;
             a->opts.out = a->out;
             resolve_seed(*a);
             const nlohmann::json report = cluster_corpus(a->opts);
             std::cout << (a->json ? report.dump(2) + "\n" : format_cluster_report(report));
           }}};
}

}  // namespace btx::cli
