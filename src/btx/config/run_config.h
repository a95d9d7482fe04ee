// The configuration of a whole run, loaded from TOML: every section a struct with defaults,
// every key checked (unknown keys are errors with the key named). The resolved config, with
// every default written out, is saved as runs/NAME/config.toml.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "btx/model/config.h"
#include "btx/util/names.h"

namespace btx {

namespace fs = std::filesystem;

// Current run-directory format; a run written by a newer btx is refused, not misread.
inline constexpr int kRunFormatVersion = 1;

struct CorpusConfig {
  std::string dir = "corpora/debian";  // folder with one .txt file or sub-folder per domain
  std::vector<std::string> domains;    // training domains (empty: every domain of dir)
  std::vector<std::string> novel;      // evaluation-only domains, from the same folder
  template <typename V>
  void visit(V& v) {
    v.field("dir", dir);
    v.field("domains", domains);
    v.field("novel", novel);
  }
};

struct TokenizerConfig {
  int vocab_size = 4096;
  int64_t sample_bytes_per_domain = 2'000'000;
  template <typename V>
  void visit(V& v) {
    v.field("vocab_size", vocab_size);
    v.field("sample_bytes_per_domain", sample_bytes_per_domain);
  }
};

struct DataConfig {
  int64_t train_tokens = 1'000'000;  // per domain: an equal budget, not "the first N bytes"
  int64_t valid_tokens = 50'000;
  int64_t test_tokens = 50'000;
  int64_t chunk_bytes = 8192;  // strided split unit
  template <typename V>
  void visit(V& v) {
    v.field("train_tokens", train_tokens);
    v.field("valid_tokens", valid_tokens);
    v.field("test_tokens", test_tokens);
    v.field("chunk_bytes", chunk_bytes);
  }
};

// One training job (the seed now; experts and finetuning reuse it).
struct TrainConfig {
  int64_t steps = 1000;
  int64_t batch_size = 16;  // sequences per micro-batch
  int64_t seq_len = 256;    // T
  int64_t grad_accum = 1;   // micro-batches per optimizer step
  double lr = 3e-3;
  double min_lr = 3e-4;
  int64_t warmup_steps = 50;
  double weight_decay = 0.1;  // decoupled; not applied to norms or biases
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;  // max global grad norm (0: off)
  int64_t eval_every = 100;
  int64_t eval_tokens = 20'000;  // per domain, from the valid split
  int64_t log_every = 10;
  int64_t checkpoint_every = 200;
  std::map<std::string, double> domain_weights;  // empty: balanced mixture
  int threads = 0;                               // LibTorch intra-op threads (0: leave as is)
  template <typename V>
  void visit(V& v) {
    v.field("steps", steps);
    v.field("batch_size", batch_size);
    v.field("seq_len", seq_len);
    v.field("grad_accum", grad_accum);
    v.field("lr", lr);
    v.field("min_lr", min_lr);
    v.field("warmup_steps", warmup_steps);
    v.field("weight_decay", weight_decay);
    v.field("beta1", beta1);
    v.field("beta2", beta2);
    v.field("eps", eps);
    v.field("grad_clip", grad_clip);
    v.field("eval_every", eval_every);
    v.field("eval_tokens", eval_tokens);
    v.field("log_every", log_every);
    v.field("checkpoint_every", checkpoint_every);
    v.field("domain_weights", domain_weights);
    v.field("threads", threads);
  }
  void validate(const std::string& where) const;
  // Tokens one optimizer step reads: batch_size x grad_accum sequences of seq_len.
  int64_t tokens_per_step() const { return batch_size * grad_accum * seq_len; }
};

// One expert of a custom list ([[experts.custom]]): its name and training mixture.
struct ExpertSpecConfig {
  std::string name;
  std::map<std::string, double> domains;  // domain -> mixture weight
  template <typename V>
  void visit(V& v) {
    v.field("name", name);
    v.field("domains", domains);
  }
};

// What an expert trains ([experts] mode), in the order help lists them; its name is the config's.
enum class ExpertMode {
  kAll,       // "all": its whole copy of the seed
  kFfn,       // "ffn": only its FFNs
  kFlexolmo,  // "flexolmo": a two-expert MoE beside the seed's frozen FFN
};
const std::vector<Named<ExpertMode>>& names(ExpertMode);
// Experts that are dense models of the seed's shape (all, ffn): what the MoE builders and
// grafting take; flexolmo experts are two-expert MoEs of their own.
inline bool dense_experts(ExpertMode mode) {
  return mode == ExpertMode::kAll || mode == ExpertMode::kFfn;
}

// The experts branched from the seed (BTM): by default one per training domain.
struct ExpertsConfig {
  // "domain": one expert per training domain, trained on that domain alone.
  // "random": `count` experts, each on a random equal share of the whole mixture (BTM's
  // baseline: ensembling without domain specialisation).
  std::string split = "domain";
  int count = 0;  // random split: number of experts (0: one per domain)
  // What an expert trains (expert_modes(); model/param_roles.h): "all" its whole copy of the
  // seed; "ffn" only its FFNs, the embeddings, attention, norms and LM head staying the seed's,
  // so that merging the experts averages nothing but identical tensors; "flexolmo" (FlexOlmo,
  // run/flexolmo.h) a two-expert MoE beside the seed's frozen FFN, shared layers frozen, whose
  // experts the `flexolmo` merge concatenates with their routers. Same token budget.
  ExpertMode mode = ExpertMode::kAll;
  std::vector<ExpertSpecConfig> custom;  // if given, exactly these experts
  TrainConfig train;                     // [experts.train]
  template <typename V>
  void visit(V& v) {
    v.field("split", split);
    v.field("count", count);
    v.field("mode", mode);
    v.table_array("custom", custom);
    auto t = v.child("train");
    train.visit(t);
    t.finish();
  }
};

// What `btx run` does after the experts ([study]): the combinations it builds, how it trains
// the experts, and the baselines it adds. Not part of a run's identity: changing it adds or
// drops stages, it never invalidates finished ones (init_run ignores it).
struct StudyConfig {
  // One `btx merge` each: "METHOD [--param value ...] [--name NAME]". Methods whose result is a
  // routed model (btx, upcycle, tag, hash, smear) are then finetuned on the mixture ([finetune]).
  std::vector<std::string> methods = {
      "dense",
      "dense --match experts+finetune --name dense-ft",
      "average",
      "weighted-average --target each",
      "ensemble --top-k 1 --name ensemble-top1",
      "ensemble --top-k 2 --name ensemble-top2",
      "ensemble --name ensemble-all",
      "btx",
      "btx --top-k 1 --name btx-top1",
      "upcycle",
      "tag",
      "hash",
      "smear",
  };
  // BTM's random-split baseline: as many experts, each on a random equal share of the whole
  // mixture, ensembled like ensemble-all (row "random-split"; its experts in random-split/).
  bool random_split = true;
  // Expert-training modes ([experts] mode) studied beside the main experts' mode: for each, a
  // sub-run sharing the seed (like the random split) whose experts train in that mode, with
  // three rows: "<mode>-ensemble" (all experts), "<mode>-average" and the mode's one-model
  // merge ("<mode>-btx" for dense experts, "flexolmo" for flexolmo experts).
  std::vector<ExpertMode> modes;
  // c-BTM's discovered domains (0: none): the training domains' text clustered into K clusters
  // by the seed's hidden states (`btx cluster --embed seed`), one expert per cluster in the
  // sub-run clusters/ (sharing the seed and tokenizer), ensembled with the cached prior (row
  // "clusters-cached") and routed by the context's distance to the clusters ("clusters-routed").
  int clusters = 0;
  std::string launcher = "local";  // experts: "local" (a pool of processes) or "slurm"
  int jobs = 2;                    // local: experts training at once
  bool build_corpus = true;        // run `btx corpus build` for the domains (Debian packages)
  bool report = true;              // write report.html
  // What `btx sweep` varies when it is given no --set: "KEY=V1,V2,..." entries (sweep.h).
  std::vector<std::string> sweep;
  template <typename V>
  void visit(V& v) {
    v.field("methods", methods);
    v.field("random_split", random_split);
    v.field("modes", modes);
    v.field("clusters", clusters);
    v.field("launcher", launcher);
    v.field("jobs", jobs);
    v.field("build_corpus", build_corpus);
    v.field("report", report);
    v.field("sweep", sweep);
  }
};

struct RunConfig {
  int format_version = kRunFormatVersion;
  std::string name = "run";
  uint64_t seed = 1234;
  CorpusConfig corpus;
  TokenizerConfig tokenizer;
  DataConfig data;
  ModelConfig model;
  TrainConfig seed_train;  // [seed]
  ExpertsConfig experts;   // [experts]
  TrainConfig finetune;    // [finetune]: MoE finetuning of merged models (btx, upcycle)
  StudyConfig study;       // [study]: what `btx run` combines and how

  template <typename V>
  void visit(V& v) {
    v.field("format_version", format_version);
    v.field("name", name);
    v.field("random_seed", seed);
    auto c = v.child("corpus");
    corpus.visit(c);
    auto t = v.child("tokenizer");
    tokenizer.visit(t);
    auto d = v.child("data");
    data.visit(d);
    auto m = v.child("model");
    model.visit(m);
    auto s = v.child("seed");
    seed_train.visit(s);
    auto e = v.child("experts");
    experts.visit(e);
    auto f = v.child("finetune");
    finetune.visit(f);
    auto st = v.child("study");
    study.visit(st);
    for (auto* child : {&c, &t, &d, &m, &s, &e, &f, &st}) child->finish();
    v.finish();
  }
};

RunConfig load_run_config(const fs::path& path);
RunConfig parse_run_config(const std::string& toml_text, const std::string& where);
std::string run_config_to_toml(const RunConfig& c);
// `c` with one key set, as `btx sweep --set KEY=VALUE` does: KEY is a dotted key of the config
// file (run_config_keys()), VALUE its TOML text (a string key also takes bare text). The result
// is checked as a whole config file is; an unknown key, a value that does not parse or has
// another type than the key's (an integer key given 128.7), or a value the config refuses is an
// error naming `where`, the key and the value.
RunConfig set_run_config_value(const RunConfig& c, const std::string& key, const std::string& value,
                               const std::string& where);

// Every key of the config as "section.key" -> its value in TOML form (arrays and tables of
// arrays whole), for naming the keys in which two configs differ.
std::map<std::string, std::string> run_config_keys(const RunConfig& c);
// The keys whose values differ between a and b (present in one only included), sorted.
std::vector<std::string> differing_keys(const std::map<std::string, std::string>& a,
                                        const std::map<std::string, std::string>& b);
std::vector<std::string> differing_keys(const RunConfig& a, const RunConfig& b);

}  // namespace btx
