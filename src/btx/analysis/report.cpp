#include "btx/analysis/report.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "btx/analysis/analysis.h"
#include "btx/analysis/barrier.h"
#include "btx/analysis/divergence.h"
#include "btx/analysis/report_assets.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

// Rounds every floating-point number of `j` to 4 significant digits: the page shows no more, and
// the analyses' many gates and probabilities take far fewer bytes.
void round_numbers(nlohmann::json& j) {
  if (j.is_number_float()) {
    const double v = j.get<double>();
    if (std::isfinite(v) && v != 0) {
      const double scale = std::pow(10.0, 3 - std::floor(std::log10(std::fabs(v))));
      j = std::round(v * scale) / scale;
    }
  } else if (j.is_structured()) {
    for (auto& v : j) round_numbers(v);
  }
}

// One model's training log: its training losses and its validation losses per domain. Lines
// that do not parse (a run cut short mid-write) are skipped.
nlohmann::json read_curves(const fs::path& metrics, const std::string& name,
                           const std::string& group) {
  nlohmann::json train = nlohmann::json::array(), valid = nlohmann::json::object();
  std::istringstream in(read_file(metrics));
  for (std::string line; std::getline(in, line);) {
    const auto r = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!r.is_object() || !r.contains("tokens") || !r["tokens"].is_number()) continue;
    const auto tokens = r["tokens"];
    if (r.contains("loss") && r["loss"].is_number()) train.push_back({tokens, r["loss"]});
    if (r.contains("valid_loss") && r["valid_loss"].is_object()) {
      for (const auto& [d, loss] : r["valid_loss"].items()) {
        if (loss.is_number()) valid[d].push_back({tokens, loss});
      }
    }
  }
  return {{"name", name}, {"group", group}, {"train", train}, {"valid", valid}};
}

// The sub-folders of `dir` in name order (none when it does not exist), a swap's temporaries
// left out.
std::vector<fs::path> folders(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_directory() && !is_temp_name(e.path().filename().string())) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The page's markers (@BTX_NAME@) replaced by `parts`; a marker without a part is an error, so
// a template and its filler cannot drift apart silently. Inserted text is never scanned again.
std::string fill_template(std::string_view page,
                          const std::vector<std::pair<std::string, std::string_view>>& parts) {
  std::string out;
  size_t at = 0;
  while (true) {
    const size_t start = page.find("@BTX_", at);
    if (start == std::string_view::npos) break;
    const size_t end = page.find('@', start + 1);
    BTX_CHECK(end != std::string_view::npos, "report template: unterminated marker");
    const std::string_view name = page.substr(start + 5, end - start - 5);
    auto it =
        std::find_if(parts.begin(), parts.end(), [&](const auto& p) { return p.first == name; });
    BTX_CHECK(it != parts.end(), "report template: unknown marker @BTX_{}@", name);
    out.append(page.substr(at, start - at));
    out.append(it->second);
    at = end + 1;
  }
  out.append(page.substr(at));
  return out;
}

}  // namespace

nlohmann::json report_data(const RunDir& run) {
  const fs::path results_file = run.root / "results.json";
  BTX_CHECK(fs::exists(results_file),
            "{} is missing: the report starts from the study's results (run `btx results --run {}` "
            "after `btx eval`)",
            results_file.string(), run.root.string());
  const auto results = read_json_file(results_file);
  BTX_CHECK(results.contains("rows") && results["rows"].is_array(),
            "{}: no \"rows\" (remake it with `btx results --run {}`)", results_file.string(),
            run.root.string());
  std::vector<std::string> notes;

  // What adaptive methods chose per domain (the ensemble's prior, tag routing's expert).
  nlohmann::json choices = nlohmann::json::object();
  for (const auto& row : results["rows"]) {
    const std::string name = row.value("model", "");
    const fs::path file = run.eval(name);
    if (!fs::exists(file)) {
      notes.push_back(
          fmt::format("No {} for {}: its per-domain choices are not shown.", file.string(), name));
      continue;
    }
    const auto domains = read_json_file(file).value("domains", nlohmann::json::object());
    for (const auto& [d, v] : domains.items()) {
      if (v.contains("model")) choices[name][d] = v["model"];
    }
  }

  // Training logs: the seed, each expert, each merged model trained further.
  nlohmann::json curves = nlohmann::json::array();
  if (fs::exists(run.seed() / "metrics.jsonl")) {
    curves.push_back(read_curves(run.seed() / "metrics.jsonl", "seed", "seed"));
  } else {
    notes.push_back(fmt::format("No {}: the seed's training curves are not shown.",
                                (run.seed() / "metrics.jsonl").string()));
  }
  for (const auto& dir : folders(run.root / "experts")) {
    if (fs::exists(dir / "metrics.jsonl")) {
      curves.push_back(
          read_curves(dir / "metrics.jsonl", "expert-" + dir.filename().string(), "expert"));
    }
  }
  for (const auto& dir : folders(run.root / "merged")) {
    if (fs::exists(dir / "metrics.jsonl")) {
      curves.push_back(read_curves(dir / "metrics.jsonl", dir.filename().string(), "merged"));
    }
  }
  round_numbers(curves);

  // Analyses of the tabulated models; a model that has one to make but lacks it is named.
  nlohmann::json analysis = nlohmann::json::object();
  for (const auto& row : results["rows"]) {
    const std::string name = row.value("model", "");
    const fs::path file = analysis_path(run, name);
    if (fs::exists(file)) {
      analysis[name] = read_json_file(file);
      round_numbers(analysis[name]);
      continue;
    }
    const std::string model = model_of_eval_name(name);
    if (fs::is_directory(run.root / model) && has_analysis(ModelFolder::open(run.root / model))) {
      notes.push_back(fmt::format("No analysis of {} ({}): run `btx analyze --run {} --model {}`.",
                                  name, file.string(), run.root.string(), model));
    }
  }
  // Why merging fails: the experts' divergence and the loss barriers between them.
  nlohmann::json why = nlohmann::json::object();
  for (const auto& [key, file] :
       {std::pair<std::string, fs::path>{"divergence", divergence_path(run)},
        std::pair<std::string, fs::path>{"barriers", barriers_path(run)}}) {
    if (!fs::exists(file)) continue;
    why[key] = read_json_file(file);
    round_numbers(why[key]);
  }
  return {{"run", run.root.filename().string()},
          {"divergence", why.value("divergence", nlohmann::json())},
          {"barriers", why.value("barriers", nlohmann::json())},
          {"results", results},
          {"choices", choices},
          {"curves", curves},
          {"analysis", analysis},
          {"notes", notes}};
}

std::string render_report_html(const nlohmann::json& data) {
  return render_page_html(data, report_assets::page_js());
}

std::string render_page_html(const nlohmann::json& data, std::string_view js) {
  const std::string script = std::string(report_assets::common_js()) + "\n" + std::string(js);
  // Invalid UTF-8 (a byte piece of a token) becomes U+FFFD rather than an exception. Every "<"
  // is written as \u003c: inside the <script> element no "</script" or "<!--" can then appear,
  // and JSON.parse gives the same strings back.
  const std::string json = data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string blob;
  blob.reserve(json.size() + json.size() / 64);
  for (char ch : json) {
    if (ch == '<') {
      blob += "\\u003c";
    } else {
      blob += ch;
    }
  }
  return fill_template(report_assets::page_html(), {{"CSS", report_assets::page_css()},
                                                    {"CHARTJS", report_assets::chart_js()},
                                                    {"DATA", blob},
                                                    {"JS", script}});
}

std::string render_report(const RunDir& run) {
  return render_report_html(report_data(run));
}

fs::path write_report(const RunDir& run, const fs::path& out) {
  const fs::path path = out.empty() ? run.root / "report.html" : out;
  write_file_atomic(path, render_report(run));
  return path;
}

}  // namespace btx
