#include "btx/analysis/sweep_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "btx/analysis/report.h"
#include "btx/analysis/report_assets.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

// A row's spread over the seeds: mean, sample standard deviation, min, max.
nlohmann::json spread(const std::vector<double>& v) {
  double sum = 0;
  for (const double x : v) sum += x;
  const double mean = sum / static_cast<double>(v.size());
  double sq = 0;
  for (const double x : v) sq += (x - mean) * (x - mean);
  const double sd = v.size() > 1 ? std::sqrt(sq / static_cast<double>(v.size() - 1)) : 0.0;
  return {{"mean", mean},
          {"sd", sd},
          {"min", *std::min_element(v.begin(), v.end())},
          {"max", *std::max_element(v.begin(), v.end())}};
}

// The study under several seeds: each row's spread, and for every pair of rows whether the
// ordering of their means held in every seed.
nlohmann::json seed_summary(const std::vector<std::string>& models, const nlohmann::json& points) {
  const char* columns[] = {"train_mean_ppl", "novel_mean_ppl"};
  // model -> column -> the value at each point (only models and columns present at every point).
  std::map<std::string, std::map<std::string, std::vector<double>>> values;
  for (const auto& m : models) {
    for (const char* col : columns) {
      std::vector<double> v;
      for (const auto& p : points) {
        const auto& rows = p.at("rows");
        if (rows.contains(m) && rows[m].contains(col) && rows[m][col].is_number())
          v.push_back(rows[m][col].get<double>());
      }
      if (v.size() == points.size()) values[m][col] = v;
    }
  }
  nlohmann::json rows = nlohmann::json::object();
  for (const auto& [m, cols] : values) {
    for (const auto& [col, v] : cols) rows[m][col] = spread(v);
  }
  nlohmann::json orderings = nlohmann::json::array();
  for (const char* col : columns) {
    for (size_t i = 0; i < models.size(); ++i) {
      for (size_t j = i + 1; j < models.size(); ++j) {
        const auto a = values.find(models[i]), b = values.find(models[j]);
        if (a == values.end() || b == values.end() || !a->second.count(col) ||
            !b->second.count(col))
          continue;
        const auto &va = a->second.at(col), &vb = b->second.at(col);
        const bool a_better = spread(va)["mean"].get<double>() <= spread(vb)["mean"].get<double>();
        const auto& better = a_better ? va : vb;
        const auto& worse = a_better ? vb : va;
        int64_t held = 0;
        for (size_t k = 0; k < better.size(); ++k) held += better[k] < worse[k] ? 1 : 0;
        orderings.push_back({{"better", a_better ? models[i] : models[j]},
                             {"worse", a_better ? models[j] : models[i]},
                             {"column", col},
                             {"held", held},
                             {"of", static_cast<int64_t>(better.size())}});
      }
    }
  }
  return {{"count", points.size()}, {"rows", rows}, {"orderings", orderings}};
}

}  // namespace

nlohmann::json sweep_results(
    const std::vector<std::pair<std::string, std::vector<std::string>>>& axes,
    const std::vector<SweepPointResult>& points) {
  nlohmann::json out_axes = nlohmann::json::array();
  for (const auto& [key, values] : axes) out_axes.push_back({{"key", key}, {"values", values}});
  std::vector<std::string> models;
  nlohmann::json out_points = nlohmann::json::array();
  for (const auto& p : points) {
    const fs::path file = p.run / "results.json";
    BTX_CHECK(fs::exists(file), "sweep point {}: {} is missing (its study did not finish)", p.label,
              file.string());
    const auto results = read_json_file(file);
    nlohmann::json rows = nlohmann::json::object();
    for (const auto& r : results.value("rows", nlohmann::json::array())) {
      const std::string m = r.value("model", "");
      if (std::find(models.begin(), models.end(), m) == models.end()) models.push_back(m);
      nlohmann::json row = nlohmann::json::object();
      for (const char* k : {"train_mean_ppl", "train_mean_ppl_ci", "novel_mean_ppl",
                            "novel_mean_ppl_ci", "gap_to_ensemble_all", "training_tokens"}) {
        if (r.contains(k)) row[k] = r[k];
      }
      rows[m] = row;
    }
    nlohmann::json settings = nlohmann::json::object();
    for (const auto& [k, v] : p.settings) settings[k] = v;
    const double total = static_cast<double>(p.seed_tokens + p.expert_tokens);
    out_points.push_back({{"label", p.label},
                          {"settings", settings},
                          {"run", p.run.string()},
                          {"seconds", p.seconds},
                          {"seed_tokens", p.seed_tokens},
                          {"expert_tokens", p.expert_tokens},
                          {"seed_share", total > 0 ? p.seed_tokens / total : 0.0},
                          {"rows", rows},
                          {"findings", results.value("findings", nlohmann::json::array())}});
  }
  nlohmann::json out = {{"axes", out_axes}, {"models", models}, {"points", out_points}};
  if (axes.size() == 1 && axes[0].first == "random_seed" && !points.empty()) {
    out["seeds"] = seed_summary(models, out_points);
  }
  return out;
}

std::string sweep_markdown(const nlohmann::json& s) {
  const auto& points = s.at("points");
  std::string out;
  auto table = [&](const char* title, const char* key) {
    out += fmt::format("{}\n\n| model |", title);
    for (const auto& p : points) out += " " + p.at("label").get<std::string>() + " |";
    out += "\n|---|";
    for (size_t i = 0; i < points.size(); ++i) out += "---:|";
    out += "\n";
    for (const auto& m : s.at("models")) {
      const std::string name = m.get<std::string>();
      // The best point of each row in bold.
      double best = 0;
      bool any = false;
      for (const auto& p : points) {
        const auto& rows = p.at("rows");
        if (rows.contains(name) && rows[name].contains(key) && rows[name][key].is_number()) {
          const double v = rows[name][key].get<double>();
          if (!any || v < best) best = v;
          any = true;
        }
      }
      if (!any) continue;
      out += "| " + name + " |";
      for (const auto& p : points) {
        const auto& rows = p.at("rows");
        if (!rows.contains(name) || !rows[name].contains(key) || !rows[name][key].is_number()) {
          out += " |";
          continue;
        }
        const double v = rows[name][key].get<double>();
        const std::string ci_key = std::string(key) + "_ci";
        const std::string ci =
            rows[name].contains(ci_key)
                ? fmt::format(" ({:.2f}-{:.2f})", rows[name][ci_key][0].get<double>(),
                              rows[name][ci_key][1].get<double>())
                : "";
        out +=
            v == best ? fmt::format(" **{:.2f}**{} |", v, ci) : fmt::format(" {:.2f}{} |", v, ci);
      }
      out += "\n";
    }
    out += "\n";
  };
  table(
      "Mean test perplexity on the training domains (best point of each row in bold; in "
      "brackets its 95% bootstrap interval over the test windows)",
      "train_mean_ppl");
  table("Mean test perplexity on the novel domains", "novel_mean_ppl");
  if (s.contains("seeds")) {
    const auto& seeds = s.at("seeds");
    const int64_t n = seeds.at("count").get<int64_t>();
    out += fmt::format(
        "Across the {} seeds: each row's mean perplexity over seeds ± its sample standard "
        "deviation [min-max]\n\n| model | training domains | novel domains |\n|---|---:|---:|\n",
        n);
    auto cell = [](const nlohmann::json& row, const char* col) {
      if (!row.contains(col)) return std::string(" |");
      const auto& c = row.at(col);
      return fmt::format(" {:.2f} ± {:.2f} [{:.2f}-{:.2f}] |", c.at("mean").get<double>(),
                         c.at("sd").get<double>(), c.at("min").get<double>(),
                         c.at("max").get<double>());
    };
    for (const auto& m : s.at("models")) {
      const std::string name = m.get<std::string>();
      if (!seeds.at("rows").contains(name)) continue;
      const auto& row = seeds.at("rows").at(name);
      out += "| " + name + " |" + cell(row, "train_mean_ppl") + cell(row, "novel_mean_ppl") + "\n";
    }
    int64_t pairs = 0, kept = 0;
    std::string flipped;
    for (const auto& o : seeds.at("orderings")) {
      ++pairs;
      const int64_t held = o.at("held").get<int64_t>(), of = o.at("of").get<int64_t>();
      if (held == of) {
        ++kept;
        continue;
      }
      flipped += fmt::format("- {} below {} ({} domains): in {} of {} seeds\n",
                             o.at("better").get<std::string>(), o.at("worse").get<std::string>(),
                             o.at("column") == "train_mean_ppl" ? "training" : "novel", held, of);
    }
    out += fmt::format(
        "\nOrderings: {} of {} pairs of rows (on the training and on the novel domains) kept the "
        "order of their means over seeds in every seed{}\n\n{}\n",
        kept, pairs, flipped.empty() ? "." : "; the others:", flipped);
  }
  out += "| point | seed tokens | expert tokens | seed share | time |\n|---|---:|---:|---:|---:|\n";
  for (const auto& p : points) {
    const double sec = p.at("seconds").get<double>();
    out += fmt::format("| {} | {:.2f}M | {:.2f}M | {:.1f}% | {}m{:02d}s |\n",
                       p.at("label").get<std::string>(), p.at("seed_tokens").get<int64_t>() / 1e6,
                       p.at("expert_tokens").get<int64_t>() / 1e6,
                       100 * p.at("seed_share").get<double>(), static_cast<int>(sec) / 60,
                       static_cast<int>(sec) % 60);
  }
  return out;
}

std::string render_sweep_html(const nlohmann::json& sweep) {
  return render_page_html(sweep, report_assets::sweep_js());
}

void write_sweep(const fs::path& root, const nlohmann::json& sweep) {
  write_file_atomic(root / "sweep.json", sweep.dump(2));
  write_file_atomic(root / "sweep.md", sweep_markdown(sweep));
  write_file_atomic(root / "sweep.html", render_sweep_html(sweep));
}

}  // namespace btx
