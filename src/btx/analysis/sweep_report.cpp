#include "btx/analysis/sweep_report.h"

#include <fmt/format.h>

#include <algorithm>

#include "btx/analysis/report.h"
#include "btx/analysis/report_assets.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

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
  return {{"axes", out_axes}, {"models", models}, {"points", out_points}};
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
