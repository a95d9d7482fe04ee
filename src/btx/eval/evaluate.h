// Per-domain held-out loss and perplexity, in one JSON shape for every model and method:
// {"model", "split", "seq_len", "domains": {name: {"tokens", "loss", "ppl", "novel",
//  "window_loss": [each window's mean loss], ["model"]}},
//  "params_total", "params_active", "flops_per_token", "summary"}; a domain's "model" says what
// a domain-adaptive method chose for it (Scorer::domain_info), e.g. the ensemble's prior.
// Loss is the mean next-token NLL (nats) over non-overlapping windows; ppl = exp(loss).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/corpus/corpus.h"
#include "btx/eval/scorer.h"
#include "btx/util/args.h"

namespace btx {

namespace fs = std::filesystem;
class ShardSet;
class Tokenizer;

struct DomainScore {
  int64_t tokens = 0;  // target tokens scored
  double loss = 0;     // mean NLL per token, nats
  // Each window's mean NLL, in stream order: what the results' bootstrap intervals resample
  // (analysis/intervals.h). Their mean is `loss` (every window has seq_len targets).
  std::vector<double> window_loss;
  double ppl() const;
};

// Scores a 1-D token stream as windows of seq_len+1 tokens with stride seq_len (each token is a
// target once), at most max_tokens targets (0: all).
DomainScore score_stream(Scorer& scorer, const torch::Tensor& stream, int64_t seq_len,
                         int64_t batch_size, int64_t max_tokens);

struct EvalOptions {
  std::string split = "test";
  int64_t seq_len = 256;
  int64_t batch_size = 16;
  int64_t max_tokens = 0;  // per domain, 0: the whole split
  int64_t novel_max_tokens = 100'000;
  std::vector<std::string> domains;  // training domains to score (empty: all of the shard set)
  std::string model_path;            // the model's folder, named in errors (empty: its name)
  std::string seq_len_from;  // where seq_len came from, said in the output (empty: not said)
};

// `btx eval`'s arguments (util/args.h). Window length and batch size 0: the run's, else the
// model's context and 16.
struct EvalArgs {
  std::string run, data, novel, tokenizer, out, name;
  std::vector<std::string> models, novel_domains;
  EvalOptions opts = [] {
    EvalOptions o;
    o.seq_len = 0;
    o.batch_size = 0;
    return o;
  }();
  bool json = false;
  template <typename V>
  void visit(V& v) {
    v.option("--run", run,
             "Run directory: its data, novel domains, window length and batch size; results go "
             "to eval/<name>.json");
    v.option("--model", models, "Model folder(s); with --run also seed, experts/NAME, merged/NAME");
    v.option("--data", data, "Token shards folder (a run's data/), without --run");
    v.option("--novel", novel,
             "Folder of novel domains (one .txt or sub-folder each), tokenized on the fly; with "
             "--run, added to the run's own novel domains");
    v.option("--novel-domains", novel_domains, "Only these domains of --novel");
    v.option("--tokenizer", tokenizer, "tokenizer.model for --novel (default: found)");
    v.option("--split", opts.split, "Shard split to score");
    v.option("--seq-len", opts.seq_len,
             "Window length T (default: the run's, else the model's context)");
    v.option("--batch-size", opts.batch_size,
             "Windows per forward pass (default: the run's, else 16)");
    v.option("--max-tokens", opts.max_tokens, "Per domain (0: the whole split)");
    v.option("--name", name, "Model name in the output (one model only)");
    v.flag("--json", json, "Print the result as JSON");
    v.option("--out", out, "Also write the JSON to this file (one model only)");
  }
};

// Up to `windows` non-overlapping windows (n, T+1) spread evenly over a token stream; (0, T+1)
// when it is shorter than one window.
torch::Tensor heldout_windows(const torch::Tensor& stream, int64_t windows, int64_t seq_len);

// Scores the shard set's `split` of each domain and, tokenized on the fly, each novel domain.
// Before each domain the scorer gets that domain's held-out text (Scorer::begin_domain): the
// valid split for a training domain, the set-aside chunks for a novel one.
nlohmann::json evaluate(Scorer& scorer, const std::string& model_name, const ShardSet& data,
                        const std::vector<CorpusDomain>& novel, const Tokenizer* tokenizer,
                        const EvalOptions& opts);

// A novel domain's tokens: evenly spaced chunks across the whole text up to `max_tokens`, so a
// sorted file (a dictionary) is not judged by its first letters. One chunk in ten is set aside
// as held-out text (`heldout` = true gives those), never scored, for methods that adapt to the
// target domain (Scorer::begin_domain).
torch::Tensor novel_domain_tokens(const CorpusDomain& d, const Tokenizer& tok, int64_t max_tokens,
                                  bool heldout = false);

}  // namespace btx
