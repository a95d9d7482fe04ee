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
#include "btx/run/model_folder.h"
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
// RUN/tokenizer.model; a checkpoint's tokenizer is its run's (model_tokenizer).
void resolve_seed(ClusterArgs& a) {
  if (a.opts.embed != "seed") return;
  BTX_CHECK(!a.run.empty() || !a.checkpoint.empty(),
            "cluster: --embed seed needs --run RUN (uses RUN/seed) or --checkpoint DIR");
  const fs::path ckpt = !a.checkpoint.empty() ? fs::path(a.checkpoint) : fs::path(a.run) / "seed";
  const fs::path run_tok = fs::path(a.run) / "tokenizer.model";
  a.opts.seed_checkpoint = ckpt;
  a.opts.seed_tokenizer = a.tokenizer.empty() && !a.run.empty() && fs::is_regular_file(run_tok)
                              ? run_tok
                              : model_tokenizer(ckpt, a.tokenizer);
}

void run_assign(const AssignArgs& a) {
  const nlohmann::json out =
      assign_files(ClusterModel::load(a.model, a.batch_size), a.text, a.chunk_bytes);
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
  cmd->add_option(
         "--seq-len", a->opts.seq_len,
         "Tokens per document for --embed seed (0: the model's longest sequence, at most 2048)")
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
