// Proxy data for routers trained without the experts' data (MetaMoE: Jiang et al. 2026,
// arXiv:2605.14289; the privacy setting of FlexOlmo, Shi et al. 2025): a domain's text cannot
// leave its owner, so the router learns from a public pool instead. For each expert the pool's
// documents most relevant to it and diverse among themselves are chosen:
//   relevance r_j(x) = mean_t [log p_j(x_t | x_<t) - log p_seed(x_t | x_<t)], how much more
//     likely expert j finds document x than the seed it was branched from: the expert's own
//     statistics, never its data;
//   diversity: greedy MAP for a determinantal point process (merge/dpp.h) with quality
//     exp(r_j(x) / temperature) over the expert's L2-normalised mean final hidden state of x.
// The result is a corpus with one domain per expert, named as the expert (its proxies), and its
// token shards (the run's tokenizer and [data] budgets), which `btx finetune --data` trains a
// router on.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/run/run_dir.h"

namespace btx {

namespace fs = std::filesystem;

struct ProxyOptions {
  fs::path pool;                     // a corpus folder: public text no expert trained on
  std::vector<std::string> domains;  // its domains to draw from (empty: all)
  int64_t per_expert = 64;           // documents chosen per expert
  int64_t candidates = 1024;         // pool documents scored, a seeded sample (0: all)
  int64_t chunk_bytes = 8192;        // a .txt domain's documents: chunks of about this size
  int64_t seq_len = 0;       // tokens of each document scored, longer ones cut (0: the experts')
  double temperature = 0.1;  // quality exp(relevance / temperature), nats per token
  uint64_t seed = 0;         // the candidate sample
  fs::path out;              // replaced atomically: corpus/, data/, manifest.json
};

// Chooses each expert's proxies from the pool and writes o.out: corpus/<expert>.txt (its
// documents, separated by blank lines), data/ (their shards, as `btx prepare` makes a run's)
// and manifest.json ("proxies": per expert the documents chosen, in choice order, with their
// source, chunk and relevance; the options). Returns the manifest. Bad options, a pool without
// enough documents of seq_len + 1 tokens, proxies too small for the run's [data] budgets, or an
// expert not finished are errors naming the option or expert; nothing is written then.
nlohmann::json select_proxies(const Run& run, const ProxyOptions& o);

// `btx proxies`' arguments, declared once (util/args.h): the CLI binds them, the study writes its
// proxies stage from them.
struct ProxiesArgs {
  std::string run;
  ProxyOptions options;
  template <typename V>
  void visit(V& v) {
    v.option("--run", run, "Run folder (its seed and trained experts)");
    v.option("--pool", options.pool, "Corpus folder of public text");
    v.option("--domains", options.domains, "Only these domains of --pool");
    v.option("--out", options.out, "Folder for the proxy corpus");
    v.option("--per-expert", options.per_expert, "Documents chosen per expert");
    v.option("--candidates", options.candidates, "Pool documents scored (0: all)");
    v.option("--chunk-bytes", options.chunk_bytes, "Document size for .txt domains");
    v.option("--seq-len", options.seq_len,
             "Tokens of each document scored (0: the experts' seq_len)");
    v.option("--temperature", options.temperature,
             "Quality exp(relevance / temperature), relevance in nats per token");
    v.option("--seed", options.seed, "Random seed of the candidate sample");
  }
};

}  // namespace btx
