#include "btx/analysis/results.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>

#include "btx/analysis/analysis.h"
#include "btx/analysis/barrier.h"
#include "btx/analysis/divergence.h"
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
                                               "training_tokens"};

std::string percent(double worse, double better) {
  return fmt::format("{:.1f}%", 100.0 * (worse / better - 1.0));
}

// The folder of a model as the results name it (seed, experts/x, merged/y, or a path).
fs::path model_dir(const RunDir& run, const std::string& model) {
  return model == "seed" ? run.seed() : resolve_model_path(run, model);
}

// training_tokens() of `model`, whose folder is open.
int64_t tokens_behind(const RunDir& run, const std::string& model, const ModelFolder& folder) {
  const int64_t seed = state_tokens(run.seed());
  if (model == "seed") return seed;
  const fs::path& dir = folder.path();
  if (!folder.merged()) return seed + state_tokens(dir);  // an expert or a plain checkpoint
  const MergeRecord& merge = folder.merge();
  if (merge.result.contains("tokens")) {  // a merge that trained the seed further (dense)
    return seed + merge.result.at("tokens").get<int64_t>();
  }
  int64_t experts = 0;
  if (merge.from_experts) {  // not upcycling, which copies the seed's FFN
    for (const auto& e : merge.experts) experts += e.tokens;
  }
  return seed + experts + state_tokens(dir);  // + finetuning, if any
}

}  // namespace

int64_t training_tokens(const RunDir& run, const std::string& model) {
  return tokens_behind(run, model, ModelFolder::open(model_dir(run, model)));
}

namespace {

// The findings of the analyses that say why merging fails, from whichever the run has: how far
// the experts moved and how much of it the average keeps (analysis/divergence.json), whether the
// paths between them cross a barrier (analysis/barriers.json), and which tokens carry the gain
// of the best learned-routing row and of the ensemble (analysis/<row>.json's token_gain).
std::vector<std::string> why_findings(const RunDir& run, const nlohmann::json* routed,
                                      const nlohmann::json* ensemble) {
  std::vector<std::string> out;
  auto read = [](const fs::path& p) {
    return fs::exists(p) ? read_json_file(p) : nlohmann::json();
  };
  if (const auto dv = read(divergence_path(run)); dv.contains("total")) {
    const auto& t = dv["total"];
    std::vector<std::string> groups;
    const auto by_group = dv.value("by_group", nlohmann::json::object());
    for (const auto& [g, c] : by_group.items()) {
      groups.push_back(fmt::format("{} {:.1f}%", g, 100 * c.at("mean_from_seed").get<double>()));
    }
    const double from = t.at("mean_from_seed").get<double>();
    out.push_back(fmt::format(
        "The experts moved {:.1f}% of the seed's norm from it ({}); their updates are at a mean "
        "cosine of {:.2f}, so the uniform average moved {:.1f}%: it keeps {:.0f}% of an expert's "
        "update.",
        100 * from, fmt::join(groups, ", "),
        t.at("mean_cosine").is_null() ? 0.0 : t["mean_cosine"].get<double>(),
        100 * t.at("mean_update").get<double>(),
        from > 0 ? 100 * t.at("mean_update").get<double>() / from : 0.0));
  }
  if (const auto br = read(barriers_path(run)); br.contains("paths")) {
    double chord = 0, mid_cost = 0;
    int64_t pairs = 0, cells = 0;
    for (const auto& p : br["paths"]) {
      chord = std::max(chord, p.at("mean").at("barrier_linear").get<double>());
      if (p.at("a") == "seed") continue;
      ++pairs;
      for (const auto& d : p.at("domains")) {
        const auto ppl = d.at("ppl").get<std::vector<double>>();
        mid_cost += ppl[ppl.size() / 2] / std::min(ppl.front(), ppl.back()) - 1;
        ++cells;
      }
    }
    if (pairs > 0 && cells > 0) {
      out.push_back(fmt::format(
          "Along the straight paths between {} pairs of experts the mean test loss rises at most "
          "{:.4f} nats above the line between the ends: {}; on each domain the midpoint (the "
          "pair's average) is {:.1f}% worse on average than the better end.",
          pairs, chord,
          chord < 0.01 ? "no barrier, the experts are linearly connected and averaging loses by "
                         "compromise"
                       : "a barrier",
          100 * mid_cost / static_cast<double>(cells)));
    }
  }
  for (const auto* r : {routed, ensemble}) {
    if (!r) continue;
    const std::string name = r->at("model").get<std::string>();
    const auto a = read(analysis_path(run, name));
    if (!a.contains("token_gain")) continue;
    const auto& g = a["token_gain"];
    const auto& avg = g.at("references").at("average");
    if (!avg.contains("training") || avg["training"].at("top_share").is_null()) continue;
    const auto& t = avg["training"];
    const double top = g.at("top_fraction").get<double>();
    std::string novel;
    if (avg.contains("novel") && !avg["novel"].at("top_share").is_null()) {
      novel =
          fmt::format(" (novel domains: {:.1f}%)", 100 * avg["novel"]["top_share"].get<double>());
    }
    out.push_back(fmt::format(
        "{}'s gain over the experts' average is {:.3f} nats per test token; the {:.0f}% of tokens "
        "where the seed is least sure carry {:.1f}% of it, where {:.0f}% would mean no "
        "concentration{}.",
        name, t.at("gain").get<double>(), 100 * top, 100 * t.at("top_share").get<double>(),
        100 * top, novel));
  }
  return out;
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

  nlohmann::json rows = nlohmann::json::array();
  std::vector<std::string> train, novel;
  std::vector<fs::path> dirs;     // each row's model folder, in row order
  std::vector<ModelFacts> facts;  // what each row's model is
  for (const auto& m : models) {
    const ModelFolder folder = ModelFolder::open(model_dir(run, m));
    dirs.push_back(folder.path());
    facts.push_back(folder.facts());
    const auto e = read_json_file(run.eval(eval_name(m)));
    if (train.empty() && novel.empty()) {
      for (auto& [d, v] : e.at("domains").items())
        (v.value("novel", false) ? novel : train).push_back(d);
    }
    nlohmann::json ppl = nlohmann::json::object();
    for (auto& [d, v] : e.at("domains").items()) ppl[d] = v.at("ppl");
    const auto& s = e.value("summary", nlohmann::json::object());
    rows.push_back({{"model", eval_name(m)},
                    {"causal", e.value("causal", true)},
                    {"ppl", ppl},
                    {"train_mean_ppl", s.value("train_mean_ppl", kNaN)},
                    {"novel_mean_ppl", s.value("novel_mean_ppl", kNaN)},
                    {"params_total", e.value("params_total", int64_t{0})},
                    {"params_active", e.value("params_active", int64_t{0})},
                    {"flops_per_token", e.value("flops_per_token", int64_t{0})},
                    {"training_tokens", tokens_behind(run, m, folder)},
                    {"method", facts.back().method},
                    {"routed", facts.back().routed},
                    {"learned_routing", facts.back().learned},
                    {"ensemble", facts.back().ensemble},
                    {"from_experts", facts.back().from_experts}});
  }

  // Best (lowest) per column, among causal rows only.
  auto value = [](const nlohmann::json& row, const std::string& col) -> std::optional<double> {
    if (row["ppl"].contains(col)) return row["ppl"][col].get<double>();
    if (!row.contains(col) || !row[col].is_number()) return std::nullopt;
    const double v = row[col].get<double>();
    return std::isfinite(v) ? std::optional<double>(v) : std::nullopt;
  };
  std::vector<std::string> columns = train;
  columns.push_back("train_mean_ppl");
  columns.insert(columns.end(), novel.begin(), novel.end());
  if (!novel.empty()) columns.push_back("novel_mean_ppl");
  columns.insert(columns.end(), kCostColumns.begin(), kCostColumns.end());
  nlohmann::json best = nlohmann::json::object();
  for (const auto& col : columns) {
    std::optional<double> lo;
    std::string who;
    for (const auto& r : rows) {
      auto v = value(r, col);
      if (!r["causal"].get<bool>() || !v) continue;
      if (!lo || *v < *lo) lo = v, who = r["model"].get<std::string>();
    }
    if (lo) best[col] = who;
  }

  // Findings, from whichever of the usual rows the study has, found by what each model is
  // (model_facts: its merge.json and config), not by its name.
  auto row = [&](const std::string& name) -> const nlohmann::json* {
    for (const auto& r : rows) {
      if (r["model"] == name && r["causal"].get<bool>()) return &r;
    }
    return nullptr;
  };
  // The first causal row whose model fits `is`.
  auto first = [&](const std::function<bool(const ModelFacts&, const fs::path&)>& is)
      -> const nlohmann::json* {
    for (size_t i = 0; i < models.size(); ++i) {
      if (rows[i]["causal"].get<bool>() && is(facts[i], dirs[i])) return &rows[i];
    }
    return nullptr;
  };
  // A model of this run's own merged/ (not of the random-split sub-run).
  auto own = [&](const fs::path& dir) {
    auto absolute = [](const fs::path& p) { return fs::absolute(p).lexically_normal(); };
    return absolute(dir).parent_path() == absolute(run.root / "merged");
  };
  // The references: the routing-free uniform average, the ensemble of all the run's experts,
  // and the dense model matched to the experts' tokens.
  const auto* average =
      first([](const ModelFacts& f, const fs::path&) { return f.method == "average"; });
  const auto* ensemble_all = first([&](const ModelFacts& f, const fs::path& dir) {
    return f.ensemble && f.ensemble_top_k == 0 && own(dir);
  });
  const auto* dense_matched = first([](const ModelFacts& f, const fs::path&) {
    const auto match = f.params.find("match");
    return f.method == "dense" && match != f.params.end() && match->second == "experts";
  });
  const auto* upcycled =
      first([](const ModelFacts& f, const fs::path&) { return f.learned && !f.from_experts; });
  auto mean = [](const nlohmann::json* r) { return r->at("train_mean_ppl").get<double>(); };
  // Each one-model row's gap to the ensemble of all experts: what a unified model has still to
  // buy back (a fraction: 0.05 is 5% higher mean perplexity on the training domains).
  for (size_t i = 0; ensemble_all && i < rows.size(); ++i) {
    if (facts[i].ensemble || !rows[i]["causal"].get<bool>()) continue;
    rows[i]["gap_to_ensemble_all"] = mean(&rows[i]) / mean(ensemble_all) - 1.0;
  }
  auto flops = [](const nlohmann::json* r) {
    return static_cast<double>(r->at("flops_per_token").get<int64_t>());
  };
  auto millions = [](const nlohmann::json* r) {
    return fmt::format("{:.2f}M", r->at("training_tokens").get<int64_t>() / 1e6);
  };
  // The best learned-routing model built from the experts (sparse upcycling, the control that
  // trained no expert, is compared with it below).
  const nlohmann::json* routed = nullptr;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    const bool learned = facts[i].learned && facts[i].from_experts;
    if (learned && r["causal"].get<bool>() && (!routed || mean(&r) < mean(routed))) routed = &r;
  }
  std::vector<std::string> findings;
  if (!best.empty() && best.contains("train_mean_ppl")) {
    const auto* b = row(best["train_mean_ppl"]);
    findings.push_back(fmt::format("Best on the training domains: {} (mean perplexity {:.2f}).",
                                   b->at("model").get<std::string>(), mean(b)));
  }
  if (const auto* avg = average; avg && routed) {
    findings.push_back(fmt::format(
        "Uniform parameter averaging (no routing): {:.2f} on the training domains, {} worse than "
        "the best learned-routing model, {} ({:.2f}).",
        mean(avg), percent(mean(avg), mean(routed)), routed->at("model").get<std::string>(),
        mean(routed)));
  }
  if (const auto* up = upcycled; up && routed) {
    findings.push_back(fmt::format(
        "{} ({} training tokens) vs sparse upcycling ({}: an MoE of seed copies, no expert "
        "training): {:.2f} vs {:.2f}; the expert training {}.",
        routed->at("model").get<std::string>(), millions(routed), millions(up), mean(routed),
        mean(up),
        mean(routed) < mean(up) ? "is worth " + percent(mean(up), mean(routed))
                                : std::string("did not pay off")));
  }
  if (const auto* ens = ensemble_all; ens && routed) {
    findings.push_back(fmt::format(
        "{} ({} training tokens) is {} the ensemble of all experts ({}; {:.2f} vs {:.2f}) at "
        "{:.0f}% of its forward FLOPs per token.",
        routed->at("model").get<std::string>(), millions(routed),
        mean(routed) <= mean(ens) ? "better than" : percent(mean(routed), mean(ens)) + " behind",
        millions(ens), mean(routed), mean(ens), 100.0 * flops(routed) / flops(ens)));
  }
  // The dense model trained on exactly as many tokens as the best learned-routing model: what
  // routing is worth at equal training compute.
  const nlohmann::json* dense_as_many = nullptr;
  for (size_t i = 0; routed && i < rows.size(); ++i) {
    if (facts[i].method == "dense" && rows[i]["causal"].get<bool>() &&
        rows[i]["training_tokens"] == routed->at("training_tokens")) {
      dense_as_many = &rows[i];
      break;
    }
  }
  if (const auto* dense = dense_as_many) {
    findings.push_back(fmt::format(
        "{} vs the dense model trained on as many tokens ({}, {}): {:.2f} vs {:.2f} on the "
        "training domains, {:.2f} vs {:.2f} on the novel domains.",
        routed->at("model").get<std::string>(), dense->at("model").get<std::string>(),
        millions(dense), mean(routed), mean(dense), routed->value("novel_mean_ppl", 0.0),
        dense->value("novel_mean_ppl", 0.0)));
  }
  if (const auto* ens = ensemble_all, *dense = dense_matched; ens && dense) {
    findings.push_back(fmt::format(
        "The ensemble ({:.2f}) vs the compute-matched dense model ({:.2f}) on the training "
        "domains; on novel domains {:.2f} vs {:.2f}.",
        mean(ens), mean(dense), ens->at("novel_mean_ppl").get<double>(),
        dense->at("novel_mean_ppl").get<double>()));
  }
  for (auto& f : why_findings(run, routed, ensemble_all)) findings.push_back(std::move(f));
  if (best.contains("novel_mean_ppl")) {
    const auto* b = row(best["novel_mean_ppl"]);
    findings.push_back(fmt::format("Best on the novel domains: {} (mean perplexity {:.2f}).",
                                   b->at("model").get<std::string>(),
                                   b->at("novel_mean_ppl").get<double>()));
  }
  return {{"run", run.root.filename().string()},
          {"train_domains", train},
          {"novel_domains", novel},
          {"rows", rows},
          {"best", best},
          {"findings", findings}};
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
  out += " mean |", rule += "---:|";
  out += " vs ensemble-all |", rule += "---:|";
  for (const auto& d : novel) out += " " + d + "* |", rule += "---:|";
  if (!novel.empty()) out += " mean* |", rule += "---:|";
  out += " params | active | GFLOP/token | training tokens |\n";
  rule += "---:|---:|---:|---:|\n";
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
    for (const auto& d : train) out += ppl_cell(d, row["ppl"][d]);
    out += ppl_cell("train_mean_ppl", row["train_mean_ppl"]);
    out += row.contains("gap_to_ensemble_all")
               ? fmt::format(" {:+.1f}% |", 100.0 * row["gap_to_ensemble_all"].get<double>())
               : std::string("  |");
    for (const auto& d : novel) out += ppl_cell(d, row["ppl"][d]);
    if (!novel.empty()) out += ppl_cell("novel_mean_ppl", row["novel_mean_ppl"]);
    out += fmt::format(
        " {} | {} | {} | {} |\n", row["params_total"].get<int64_t>(),
        mark("params_active", m, std::to_string(row["params_active"].get<int64_t>())),
        mark("flops_per_token", m,
             fmt::format("{:.4f}", row["flops_per_token"].get<int64_t>() / 1e9)),
        mark("training_tokens", m, std::to_string(row["training_tokens"].get<int64_t>())));
  }
  out +=
      "\nTest perplexity per domain (* novel: no expert trained on it); mean = exp(mean loss); "
      "vs ensemble-all: a one-model row's mean against the ensemble of all experts; training "
      "tokens: every token behind the row (seed, experts, finetuning); best of each column in "
      "bold";
  out +=
      any_noncausal ? "; [nc] not causal (routing reads the whole sequence): not ranked.\n" : ".\n";
  if (!r.at("findings").empty()) {
    out += "\n";
    for (const auto& f : r.at("findings")) out += "- " + f.get<std::string>() + "\n";
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
