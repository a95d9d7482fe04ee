#include "btx/run/run_dir.h"

#include <spdlog/spdlog.h>

#include <sstream>

#include "btx/corpus/corpus.h"
#include "btx/data/shards.h"
#include "btx/data/tokenizer.h"
#include "btx/eval/evaluate.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

struct Run::State {
  RunConfig config;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<ShardSet> shards;
};

Run::Run(RunDir dir, RunConfig config) : RunDir(std::move(dir)), s_(std::make_shared<State>()) {
  s_->config = std::move(config);
}

Run Run::open(const fs::path& root) {
  const RunDir dir{root};
  return Run(dir, load_run(dir));
}

const RunConfig& Run::config() const {
  return s_->config;
}

const Tokenizer& Run::tokenizer() const {
  if (!s_->tokenizer)
    s_->tokenizer = std::make_unique<Tokenizer>(Tokenizer::load(tokenizer_file()));
  return *s_->tokenizer;
}

const ShardSet& Run::shards() const {
  if (!s_->shards) s_->shards = std::make_unique<ShardSet>(ShardSet::open(data()));
  return *s_->shards;
}

void init_run(const Run& run, bool force) {
  const RunConfig& config = run.config();
  const std::string text = run_config_to_toml(config);
  if (fs::exists(run.config_file())) {
    const auto was = run_config_keys(load_run(run)), now = run_config_keys(config);
    const auto all = differing_keys(was, now);
    if (all.empty()) return;
    std::vector<std::string> keys;  // those that make it another run: all but [study]'s
    for (const auto& k : all) {
      if (k.rfind("study.", 0) != 0) keys.push_back(k);
    }
    // A run whose first command failed before making anything (no tokenizer, data or seed) has
    // nothing the old config must protect: the corrected config is adopted.
    const bool nothing_made =
        !fs::exists(run.tokenizer_file()) && !fs::exists(run.data()) && !fs::exists(run.seed());
    if (!keys.empty() && nothing_made && !force) {
      spdlog::info("{}: nothing was made with its config yet: adopting the new one",
                   run.root.string());
      write_file_atomic(run.config_file(), text);
      return;
    }
    if (!keys.empty() && !force) {
      std::string detail;
      for (size_t i = 0; i < keys.size() && i < 5; ++i) {
        auto value = [&](const auto& m) {
          auto it = m.find(keys[i]);
          return it == m.end() ? std::string("(none)") : it->second;
        };
        detail += fmt::format("{}{} = {} in the run, {} in the new config", i ? "; " : "", keys[i],
                              value(was), value(now));
      }
      if (keys.size() > 5) detail += fmt::format("; and {} more", keys.size() - 5);
      fail(
          "{} was made with a different config ({} key(s) differ: {}); use a new run folder, "
          "the run's own config.toml, or --force to adopt the new config (stages whose inputs "
          "changed are then run again)",
          run.root.string(), keys.size(), detail);
    }
    if (!keys.empty()) {
      spdlog::warn("{}: adopting the new config (--force); differing keys: {}", run.root.string(),
                   fmt::join(keys, ", "));
    }
    write_file_atomic(run.config_file(), text);  // [study] changes (or forced ones) are adopted
    return;
  }
  fs::create_directories(run.root);
  write_file_atomic(run.config_file(), text);
}

RunConfig load_run(const RunDir& run) {
  BTX_CHECK(fs::exists(run.config_file()), "{} is not a btx run folder: {} is missing",
            run.root.string(), run.config_file().string());
  return load_run_config(run.config_file());
}

void ensure_tokenizer(const Run& run) {
  const RunConfig& c = run.config();
  if (fs::exists(run.tokenizer_file())) return;
  spdlog::info("tokenizer: training a {}-piece BPE model on {}", c.tokenizer.vocab_size,
               c.corpus.dir);
  TokenizerTrainOptions o;
  o.corpus = c.corpus.dir;
  o.domains = c.corpus.domains;
  o.out_model = run.tokenizer_file();
  o.vocab_size = c.tokenizer.vocab_size;
  o.sample_bytes_per_domain = c.tokenizer.sample_bytes_per_domain;
  o.seed = c.seed;
  train_tokenizer(o);
}

void ensure_data(const Run& run) {
  const RunConfig& c = run.config();
  if (fs::exists(run.data() / "manifest.json")) {
    run.shards();  // opened (and kept): validates format version, files and sizes
    return;
  }
  spdlog::info("data: tokenizing {} domains from {}", c.corpus.domains.size(), c.corpus.dir);
  ShardOptions o;
  o.corpus = c.corpus.dir;
  o.domains = c.corpus.domains;
  o.out = run.data();
  o.train_tokens = c.data.train_tokens;
  o.valid_tokens = c.data.valid_tokens;
  o.test_tokens = c.data.test_tokens;
  o.chunk_bytes = c.data.chunk_bytes;
  o.seed = c.seed;
  prepare_shards(o, run.tokenizer());
}

TrainJob run_train_job(const Run& run, const std::string& name, const fs::path& out_dir,
                       const TrainConfig& train, const std::string& seed_tag) {
  const RunConfig& c = run.config();
  TrainJob job;
  job.name = name;
  job.out_dir = out_dir;
  job.model = c.model;
  job.train = train;
  job.seed = seed_tag.empty() ? c.seed : derive_seed(c.seed, seed_tag);
  job.data_dir = run.data();
  return job;
}

TrainResult train_seed(const Run& run, bool resume, int64_t stop_after) {
  const RunConfig& c = run.config();
  TrainJob job = run_train_job(run, "seed", run.seed(), c.seed_train, "");
  job.resume = resume;
  job.stop_after = stop_after;
  return train(job);
}

fs::path resolve_model_path(const RunDir& run, const std::string& model) {
  if (fs::exists(model)) return model;
  const fs::path in_run = run.root / model;
  BTX_CHECK(fs::exists(in_run), "model {} does not exist (nor {})", model, in_run.string());
  return in_run;
}

std::string eval_name(const fs::path& model) {
  const fs::path clean = model.lexically_normal();
  const fs::path dir = clean.filename().empty() ? clean.parent_path() : clean;
  if (dir.parent_path().filename() == "experts") return "expert-" + dir.filename().string();
  return dir.filename().string();
}

std::string model_of_eval_name(const std::string& name) {
  const std::string expert = "expert-";
  if (name == "seed") return name;
  if (name.rfind(expert, 0) == 0) return "experts/" + name.substr(expert.size());
  return "merged/" + name;
}

EvalOptions run_eval_options(const RunConfig& c, const std::string& split) {
  EvalOptions o;
  o.split = split;
  o.seq_len = c.seed_train.seq_len;
  o.batch_size = c.seed_train.batch_size;
  o.novel_max_tokens = c.data.test_tokens;  // as many as a training domain's test split
  return o;
}

std::vector<CorpusDomain> run_novel_domains(const RunConfig& c) {
  if (c.corpus.novel.empty()) return {};
  return select_domains(list_corpus(c.corpus.dir), c.corpus.novel, c.corpus.dir);
}

nlohmann::json evaluate_in_run(const RunDir& run, Scorer& scorer, const std::string& name,
                               const std::vector<CorpusDomain>& novel, const EvalOptions& opts) {
  const ShardSet data = ShardSet::open(run.data());
  const Tokenizer tok = Tokenizer::load(run.tokenizer_file());
  const bool test = opts.split == "test";
  auto result =
      evaluate(scorer, name, data, test ? novel : std::vector<CorpusDomain>{}, &tok, opts);
  if (test) write_file_atomic(run.eval(name), result.dump(2));
  return result;
}

torch::Tensor domain_heldout_windows(const Run& run, const std::string& domain, int64_t windows,
                                     int64_t seq_len) {
  const RunConfig& c = run.config();
  const ShardSet& data = run.shards();  // opened once per run, not once per domain
  if (data.has(domain)) {
    const auto& valid = data.shard(domain, "valid");
    return heldout_windows(valid.slice(0, valid.size()), windows, seq_len);
  }
  const auto& novel = c.corpus.novel;
  BTX_CHECK(std::find(novel.begin(), novel.end(), domain) != novel.end(),
            "domain '{}' is neither a training domain of {} ({}) nor one of its novel domains ({})",
            domain, run.root.string(), fmt::join(data.domains(), ", "), fmt::join(novel, ", "));
  const auto d = select_domains(list_corpus(c.corpus.dir), {domain}, c.corpus.dir).at(0);
  return heldout_windows(
      novel_domain_tokens(d, run.tokenizer(), windows * (seq_len + 1), /*heldout=*/true), windows,
      seq_len);
}

std::string format_eval_table(const nlohmann::json& e) {
  const std::string from = e.value("seq_len_from", "");
  std::string out =
      fmt::format("{} ({} split, T={}{})\n", e.value("model", "?"), e.value("split", "?"),
                  e.value("seq_len", 0), from.empty() ? "" : ": " + from);
  out += fmt::format("  {:<16} {:>9} {:>8} {:>10}\n", "domain", "tokens", "loss", "ppl");
  for (bool novel : {false, true}) {
    for (auto& [name, d] : e.at("domains").items()) {
      if (d.value("novel", false) != novel) continue;
      out += fmt::format("  {:<16} {:>9} {:>8.4f} {:>10.2f}{}\n", name,
                         d.at("tokens").get<int64_t>(), d.at("loss").get<double>(),
                         d.at("ppl").get<double>(), novel ? "  (novel)" : "");
    }
  }
  const auto& s = e.value("summary", nlohmann::json::object());
  if (s.contains("train_mean_ppl")) {
    out += fmt::format("  {:<16} {:>9} {:>8.4f} {:>10.2f}\n", "mean (training)", "",
                       s["train_mean_loss"].get<double>(), s["train_mean_ppl"].get<double>());
  }
  if (s.contains("novel_mean_ppl")) {
    out += fmt::format("  {:<16} {:>9} {:>8.4f} {:>10.2f}\n", "mean (novel)", "",
                       s["novel_mean_loss"].get<double>(), s["novel_mean_ppl"].get<double>());
  }
  out += fmt::format("  params total {} / active {}, forward FLOPs per token {}\n",
                     e.value("params_total", int64_t{0}), e.value("params_active", int64_t{0}),
                     e.value("flops_per_token", int64_t{0}));
  return out;
}

std::string format_comparison(const std::vector<nlohmann::json>& evals) {
  if (evals.empty()) return "";
  std::vector<std::string> train, novel;  // the first evaluation's domains, in order
  for (auto& [name, d] : evals.front().at("domains").items()) {
    (d.value("novel", false) ? novel : train).push_back(name);
  }
  // A model whose routing reads the whole sequence is marked: its perplexity is not causal.
  auto label = [](const nlohmann::json& e) {
    return e.value("model", std::string("?")) + (e.value("causal", true) ? "" : " [nc]");
  };
  size_t w = 8;
  bool any_noncausal = false;
  for (const auto& e : evals) {
    w = std::max(w, label(e).size());
    any_noncausal |= !e.value("causal", true);
  }
  auto cell = [](const nlohmann::json& e, const std::string& d) {
    const auto& ds = e.at("domains");
    return ds.contains(d) ? fmt::format("{:>10.2f}", ds[d].at("ppl").get<double>())
                          : fmt::format("{:>10}", "-");
  };
  std::string out = fmt::format("{:<{}}", "model", w);
  for (const auto& d : train) out += fmt::format(" {:>10.10}", d);
  out += fmt::format(" {:>10}", "mean");
  for (const auto& d : novel) out += fmt::format(" {:>10.10}", d + "*");
  if (!novel.empty()) out += fmt::format(" {:>10}", "mean*");
  out += fmt::format(" {:>10} {:>10} {:>9}\n", "params", "active", "GFLOP/tok");
  for (const auto& e : evals) {
    const auto& s = e.value("summary", nlohmann::json::object());
    out += fmt::format("{:<{}}", label(e), w);
    for (const auto& d : train) out += " " + cell(e, d);
    out += fmt::format(" {:>10.2f}", s.value("train_mean_ppl", 0.0));
    for (const auto& d : novel) out += " " + cell(e, d);
    if (!novel.empty()) out += fmt::format(" {:>10.2f}", s.value("novel_mean_ppl", 0.0));
    out += fmt::format(" {:>10} {:>10} {:>9.4f}\n", e.value("params_total", int64_t{0}),
                       e.value("params_active", int64_t{0}),
                       static_cast<double>(e.value("flops_per_token", int64_t{0})) / 1e9);
  }
  out += "perplexity per domain (* novel: no expert trained on it); mean = exp(mean loss)\n";
  if (any_noncausal) {
    out +=
        "[nc] not causal: routing reads the whole sequence, so position t sees later tokens; not "
        "comparable with the others\n";
  }
  return out;
}

}  // namespace btx
