#include "btx/analysis/results.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <set>

#include "btx/analysis/findings.h"
#include "btx/model/llama.h"
#include "btx/run/model_folder.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

int64_t state_tokens(const fs::path& dir) {
  auto s = load_train_state(dir);
  return s ? s->tokens : 0;
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The columns where lower is better, in table order after the per-domain ones.
const std::vector<std::string> kCostColumns = {"params_active", "flops_per_token",
                                               "training_tokens", "training_flops"};

// The folder of a model as the results name it (seed, experts/x, merged/y, or a path).
fs::path model_dir(const RunDir& run, const std::string& model) {
  return model == "seed" ? run.seed() : resolve_model_path(run, model);
}

// Training FLOPs per token of a checkpoint trained on windows of `context` tokens: three times
// its forward FLOPs (forward and backward; forward_flops_per_token's convention: 2 per weight of
// the active non-embedding layers and the LM head, plus attention). From its config.json alone
// (the model is built, its weights are not read), once per config and context.
double train_flops_per_token(const fs::path& dir, int64_t context) {
  static std::map<std::pair<std::string, int64_t>, double> known;
  const auto key = std::make_pair(read_file(dir / "config.json"), context);
  if (auto it = known.find(key); it != known.end()) return it->second;
  torch::NoGradGuard no_grad;
  const CausalLM m(load_model_config(dir));
  const double f = 3.0 * static_cast<double>(forward_flops_per_token(m, context));
  known.emplace(key, f);
  return f;
}

// What it took to train a model: its tokens and FLOPs, summed over the seed, the experts it is
// made of (not for sparse upcycling, which copies the seed's FFN) and any other seed they were
// branched from, and its own training (a dense
// baseline's, the stitches', the finetuning). `own_flops_per_token`: the model's measured forward
// FLOPs per token (its evaluation's), for its own training; 0 when only tokens are wanted.
struct TrainingCost {
  int64_t tokens = 0;
  double flops = 0;
  void add(int64_t t, double train_flops_per_token) {
    tokens += t;
    flops += static_cast<double>(t) * train_flops_per_token;
  }
};
TrainingCost cost_behind(const RunDir& run, const RunConfig& c, const std::string& model,
                         const ModelFolder& folder, double own_flops_per_token) {
  const int64_t expert_context = c.experts.train.seq_len;
  TrainingCost cost;
  cost.add(state_tokens(run.seed()), train_flops_per_token(run.seed(), c.seed_train.seq_len));
  if (model == "seed") return cost;
  const fs::path& dir = folder.path();
  if (!folder.merged()) {  // an expert or a plain checkpoint
    cost.add(state_tokens(dir), train_flops_per_token(dir, expert_context));
    return cost;
  }
  const MergeRecord& merge = folder.merge();
  if (merge.result.contains("tokens")) {  // a merge that trained the seed further (dense)
    cost.add(merge.result.at("tokens").get<int64_t>(), train_flops_per_token(dir, expert_context));
    return cost;
  }
  if (merge.from_experts) {
    // Experts branched from another seed (Symphony-MoE's, taken from another run) bring that
    // seed's training too, once per seed: the run folder above the expert's, when it has one.
    // The run's own seed is hashed only when an expert comes from another run folder.
    std::set<std::string> seeds;
    for (const auto& e : merge.experts) {
      cost.add(e.tokens, train_flops_per_token(e.dir, expert_context));
      const fs::path record = e.dir / "expert.json";
      const fs::path other_seed = e.dir.parent_path().parent_path() / "seed";
      if (!fs::exists(record) || !fs::exists(other_seed / "model.safetensors") ||
          fs::equivalent(other_seed, run.seed()))
        continue;
      const std::string sha = read_json_file(record)
                                  .value("init", nlohmann::json::object())
                                  .value("seed_sha256", std::string());
      if (seeds.empty()) seeds.insert(sha256_file(run.seed() / "model.safetensors"));
      if (sha.empty() || !seeds.insert(sha).second) continue;
      cost.add(state_tokens(other_seed), train_flops_per_token(other_seed, c.seed_train.seq_len));
    }
  }
  // Its own training at its own cost per token: a stitched model's stitches (Branch-Train-Stitch),
  // a routed model's finetuning.
  const double own = 3.0 * own_flops_per_token;
  cost.add(merge.result.value("stitch_tokens", int64_t{0}), own);
  cost.add(state_tokens(dir), own);
  return cost;
}

// training_tokens() of `model`, whose folder is open.
int64_t tokens_behind(const RunDir& run, const std::string& model, const ModelFolder& folder) {
  return cost_behind(run, load_run(run), model, folder, 0).tokens;
}

}  // namespace

int64_t training_tokens(const RunDir& run, const std::string& model) {
  return tokens_behind(run, model, ModelFolder::open(model_dir(run, model)));
}

namespace {

// The row of `model` (as `btx eval` names it) from its evaluation and its folder.
ResultRow result_row(const RunDir& run, const RunConfig& c, const std::string& model,
                     const nlohmann::json& eval) {
  const ModelFolder folder = ModelFolder::open(model_dir(run, model));
  ResultRow r;
  r.model = eval_name(model);
  r.dir = folder.path();
  r.facts = folder.facts();
  r.causal = eval.value("causal", true);
  for (auto& [d, v] : eval.at("domains").items()) r.ppl[d] = v.at("ppl").get<double>();
  const auto& s = eval.value("summary", nlohmann::json::object());
  r.train_mean_ppl = s.value("train_mean_ppl", kNaN);
  r.novel_mean_ppl = s.value("novel_mean_ppl", kNaN);
  r.params_total = eval.value("params_total", int64_t{0});
  r.params_active = eval.value("params_active", int64_t{0});
  r.flops_per_token = eval.value("flops_per_token", int64_t{0});
  const TrainingCost cost =
      cost_behind(run, c, model, folder, static_cast<double>(r.flops_per_token));
  r.training_tokens = cost.tokens;
  r.training_flops = cost.flops;
  return r;
}

// An evaluation's domains, training and novel, in its order: the table's columns.
void split_domains(const nlohmann::json& eval, std::vector<std::string>& train,
                   std::vector<std::string>& novel) {
  for (auto& [d, v] : eval.at("domains").items())
    (v.value("novel", false) ? novel : train).push_back(d);
}

// A row's window losses on `domains` (the table's order); empty when its evaluation lacks any.
WindowLosses window_losses(const nlohmann::json& eval, const std::vector<std::string>& domains) {
  WindowLosses out;
  for (const auto& d : domains) {
    const auto& v = eval.at("domains").value(d, nlohmann::json::object());
    if (!v.contains("window_loss") || v.at("window_loss").empty()) return {};
    out.push_back(v.at("window_loss").get<std::vector<double>>());
  }
  return out;
}

// The resamples of the first row with windows on these domains (every row of a run is scored on
// the same windows; a row that is not stays without an interval).
std::optional<WindowBootstrap> table_bootstrap(const std::vector<ResultRow>& rows, bool novel) {
  for (const auto& r : rows) {
    const WindowLosses& w = novel ? r.novel_windows : r.train_windows;
    if (!w.empty()) return WindowBootstrap(WindowBootstrap::counts_of(w));
  }
  return std::nullopt;
}

nlohmann::json row_json(const ResultRow& r) {
  nlohmann::json j = {{"model", r.model},
                      {"causal", r.causal},
                      {"ppl", r.ppl},
                      {"train_mean_ppl", r.train_mean_ppl},
                      {"novel_mean_ppl", r.novel_mean_ppl},
                      {"params_total", r.params_total},
                      {"params_active", r.params_active},
                      {"flops_per_token", r.flops_per_token},
                      {"training_tokens", r.training_tokens},
                      {"training_flops", r.training_flops},
                      {"method", r.facts.method},
                      {"routed", r.facts.routed},
                      {"learned_routing", r.facts.learned},
                      {"ensemble", r.facts.ensemble},
                      {"from_experts", r.facts.from_experts}};
  if (r.gap_to_ensemble_all) j["gap_to_ensemble_all"] = *r.gap_to_ensemble_all;
  if (r.train_ci) j["train_mean_ppl_ci"] = {r.train_ci->lo, r.train_ci->hi};
  if (r.novel_ci) j["novel_mean_ppl_ci"] = {r.novel_ci->lo, r.novel_ci->hi};
  return j;
}

// A row's value in a column of the table: a domain's perplexity, or a finite number.
std::optional<double> column_value(const ResultRow& r, const std::string& col) {
  if (auto it = r.ppl.find(col); it != r.ppl.end()) return it->second;
  double v = 0;
  if (col == "train_mean_ppl")
    v = r.train_mean_ppl;
  else if (col == "novel_mean_ppl")
    v = r.novel_mean_ppl;
  else if (col == "params_active")
    v = static_cast<double>(r.params_active);
  else if (col == "flops_per_token")
    v = static_cast<double>(r.flops_per_token);
  else if (col == "training_tokens")
    v = static_cast<double>(r.training_tokens);
  else if (col == "training_flops")
    v = r.training_flops;
  else
    return std::nullopt;
  return std::isfinite(v) ? std::optional<double>(v) : std::nullopt;
}

// Column -> the causal row with the lowest value in it.
std::map<std::string, std::string> best_of(const std::vector<ResultRow>& rows,
                                           const std::vector<std::string>& columns) {
  std::map<std::string, std::string> best;
  for (const auto& col : columns) {
    std::optional<double> lo;
    std::string who;
    for (const auto& r : rows) {
      const auto v = column_value(r, col);
      if (!r.causal || !v) continue;
      if (!lo || *v < *lo) lo = v, who = r.model;
    }
    if (lo) best[col] = who;
  }
  return best;
}

}  // namespace

nlohmann::json study_results(const RunDir& run, const std::vector<std::string>& models) {
  BTX_CHECK(!models.empty(), "no models to tabulate");
  std::vector<std::string> missing;
  for (const auto& m : models) {
    if (!fs::exists(run.eval(eval_name(m)))) missing.push_back(m);
  }
  BTX_CHECK(missing.empty(), "{}: no evaluation of {} (run `btx eval --run {} --model {}`)",
            (run.root / "eval").string(), fmt::join(missing, ", "), run.root.string(),
            fmt::join(missing, ","));

  const RunConfig config = load_run(run);
  std::vector<ResultRow> rows;
  std::vector<std::string> train, novel;
  for (const auto& m : models) {
    const auto e = read_json_file(run.eval(eval_name(m)));
    if (train.empty() && novel.empty()) split_domains(e, train, novel);
    rows.push_back(result_row(run, config, m, e));
    rows.back().train_windows = window_losses(e, train);
    rows.back().novel_windows = window_losses(e, novel);
  }
  TableBootstrap boot;
  boot.train = table_bootstrap(rows, false);
  boot.novel = table_bootstrap(rows, true);
  for (auto& r : rows) {
    if (boot.train) r.train_ci = boot.train->mean_ppl_interval(r.train_windows);
    if (boot.novel) r.novel_ci = boot.novel->mean_ppl_interval(r.novel_windows);
  }
  std::vector<std::string> columns = train;
  columns.push_back("train_mean_ppl");
  columns.insert(columns.end(), novel.begin(), novel.end());
  if (!novel.empty()) columns.push_back("novel_mean_ppl");
  columns.insert(columns.end(), kCostColumns.begin(), kCostColumns.end());
  const auto best = best_of(rows, columns);

  const References refs = find_references(run, rows);
  // Each one-model row's gap to the ensemble of all experts: what a unified model has still to
  // buy back (a fraction: 0.05 is 5% higher mean perplexity on the training domains).
  for (auto& r : rows) {
    if (!refs.ensemble_all || r.facts.ensemble || !r.causal) continue;
    r.gap_to_ensemble_all = r.train_mean_ppl / refs.ensemble_all->train_mean_ppl - 1.0;
  }
  nlohmann::json row_list = nlohmann::json::array();
  for (const auto& r : rows) row_list.push_back(row_json(r));
  return {{"run", run.root.filename().string()},
          {"train_domains", train},
          {"novel_domains", novel},
          {"rows", row_list},
          {"best", best},
          {"intervals",
           "95% percentile bootstrap over the test windows (1,000 resamples, stratified by "
           "domain, the same resamples for every row; paired for the findings' differences)"},
          {"findings", study_findings(run, rows, refs, best, boot)}};
}

std::string results_markdown(const nlohmann::json& r) {
  const auto train = r.at("train_domains").get<std::vector<std::string>>();
  const auto novel = r.at("novel_domains").get<std::vector<std::string>>();
  const auto& best = r.at("best");
  auto mark = [&](const std::string& col, const std::string& model, const std::string& text) {
    return best.contains(col) && best[col] == model ? "**" + text + "**" : text;
  };
  std::string out = "| model |";
  std::string rule = "|---|";
  for (const auto& d : train) out += " " + d + " |", rule += "---:|";
  out += " mean | 95% CI |", rule += "---:|---:|";
  out += " vs ensemble-all |", rule += "---:|";
  for (const auto& d : novel) out += " " + d + "* |", rule += "---:|";
  if (!novel.empty()) out += " mean* | 95% CI* |", rule += "---:|---:|";
  out += " params | active | GFLOP/token | training tokens | training TFLOP |\n";
  rule += "---:|---:|---:|---:|---:|\n";
  out += rule;
  bool any_noncausal = false;
  for (const auto& row : r.at("rows")) {
    const std::string m = row.at("model");
    const bool causal = row.at("causal").get<bool>();
    any_noncausal |= !causal;
    out += "| " + m + (causal ? "" : " [nc]") + " |";
    auto ppl_cell = [&](const std::string& col, const nlohmann::json& v) {
      return " " + mark(col, m, fmt::format("{:.2f}", v.get<double>())) + " |";
    };
    auto ci_cell = [&](const char* key) {
      if (!row.contains(key)) return std::string("  |");
      return fmt::format(" {:.2f}-{:.2f} |", row[key][0].get<double>(), row[key][1].get<double>());
    };
    for (const auto& d : train) out += ppl_cell(d, row["ppl"][d]);
    out += ppl_cell("train_mean_ppl", row["train_mean_ppl"]);
    out += ci_cell("train_mean_ppl_ci");
    out += row.contains("gap_to_ensemble_all")
               ? fmt::format(" {:+.1f}% |", 100.0 * row["gap_to_ensemble_all"].get<double>())
               : std::string("  |");
    for (const auto& d : novel) out += ppl_cell(d, row["ppl"][d]);
    if (!novel.empty())
      out += ppl_cell("novel_mean_ppl", row["novel_mean_ppl"]) + ci_cell("novel_mean_ppl_ci");
    out += fmt::format(
        " {} | {} | {} | {} | {} |\n", row["params_total"].get<int64_t>(),
        mark("params_active", m, std::to_string(row["params_active"].get<int64_t>())),
        mark("flops_per_token", m,
             fmt::format("{:.4f}", row["flops_per_token"].get<int64_t>() / 1e9)),
        mark("training_tokens", m, std::to_string(row["training_tokens"].get<int64_t>())),
        mark("training_flops", m, fmt::format("{:.2f}", row.value("training_flops", 0.0) / 1e12)));
  }
  out +=
      "\nTest perplexity per domain (* novel: no expert trained on it); mean = exp(mean loss); "
      "95% CI: " +
      r.value("intervals", std::string("none recorded")) +
      "; "
      "vs ensemble-all: a one-model row's mean against the ensemble of all experts; training "
      "tokens: every token behind the row (seed, experts, finetuning); training TFLOP: their "
      "FLOPs, 3 x forward FLOPs per token (2 per active weight and attention) x tokens, each part "
      "at its own model's cost; best of each column in bold";
  out +=
      any_noncausal ? "; [nc] not causal (routing reads the whole sequence): not ranked.\n" : ".\n";
  if (!r.at("findings").empty()) {
    out += "\n";
    for (const auto& f : r.at("findings")) out += "- " + f.get<std::string>() + "\n";
  }
  return out;
}

std::string compare_models(const RunDir& run, const std::string& a, const std::string& b) {
  std::vector<ResultRow> rows;
  std::vector<std::string> train, novel;
  for (const auto& m : {a, b}) {
    const fs::path file = run.eval(eval_name(m));
    BTX_CHECK(fs::exists(file), "{}: no evaluation of {} (run `btx eval --run {} --model {}`)",
              file.string(), m, run.root.string(), m);
    const auto e = read_json_file(file);
    if (rows.empty()) split_domains(e, train, novel);
    ResultRow r;
    r.model = eval_name(m);
    r.train_windows = window_losses(e, train);
    r.novel_windows = window_losses(e, novel);
    BTX_CHECK(!r.train_windows.empty(),
              "{}: no window losses on the domains of {} (an evaluation made before btx recorded "
              "them, or of other domains); evaluate {} again",
              file.string(), a, m);
    rows.push_back(std::move(r));
  }
  TableBootstrap boot;
  boot.train = table_bootstrap(rows, false);
  boot.novel = table_bootstrap(rows, true);
  std::string out;
  for (const bool is_novel : {false, true}) {
    if (is_novel && novel.empty()) continue;
    const auto d = boot.difference(rows[0], rows[1], is_novel);
    BTX_CHECK(d.has_value(),
              "{} and {} were not scored on the same {} windows (another split, "
              "window length or text)",
              a, b, is_novel ? "novel" : "test");
    out += fmt::format(
        "{} vs {} ({} domains): {:+.2f}% (95% CI {:+.2f}% to {:+.2f}%, paired over the same "
        "test windows){}\n",
        rows[1].model, rows[0].model, is_novel ? "novel" : "training", 100 * d->estimate,
        100 * d->ci.lo, 100 * d->ci.hi, d->excludes_zero() ? "" : "; the interval includes zero");
  }
  return out;
}

void write_results(const RunDir& run, const nlohmann::json& results) {
  write_file_atomic(run.root / "results.json", results.dump(2) + "\n");
  write_file_atomic(run.root / "results.md", results_markdown(results));
}

std::vector<std::string> evaluated_models(const RunDir& run) {
  BTX_CHECK(fs::is_directory(run.root / "eval"), "{}: no evaluations yet (run `btx eval`)",
            (run.root / "eval").string());
  std::vector<std::string> models;
  for (const auto& f : fs::directory_iterator(run.root / "eval")) {
    if (f.path().extension() == ".json") {
      models.push_back(model_of_eval_name(f.path().stem().string()));
    }
  }
  std::sort(models.begin(), models.end());
  std::stable_partition(models.begin(), models.end(),
                        [](const std::string& m) { return m == "seed"; });
  return models;
}

}  // namespace btx
