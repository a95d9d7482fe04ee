// The study's report: one self-contained HTML page (Chart.js and all data inlined, no network)
// with the results table and findings, perplexity by domain and method, training and validation
// curves of the seed, the experts and every finetuned / further-trained model, and for each
// routed model and ensemble what its analysis (analysis.h) found: per-layer domain x expert
// heatmaps, router entropy, the tokens of each domain coloured by their experts, the ensemble's
// posterior over its experts along a text. Everything but results.json is optional: what is
// missing is named in the page, with the command that makes it.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "btx/run/run_dir.h"
#include "btx/util/args.h"

namespace btx {

// Everything the page shows, as one JSON document: {"run", "divergence" and "barriers" (the
// run's analysis/divergence.json and barriers.json, or null), "results", "choices": {model:
// {domain: what the model chose}}, "curves": [{"name", "group": "seed" | "expert" | "merged",
// "train": [[tokens, loss]], "valid": {domain: [[tokens, loss]]}}], "analysis": {model: ...},
// "notes": [sentences]}. Numbers of curves and analyses are rounded to 4 significant digits.
nlohmann::json report_data(const RunDir& run);

// The page for `data` (report_data's shape); text reaches the page only as JSON, shown by the
// page's script as text, never parsed as HTML.
std::string render_report_html(const nlohmann::json& data);
// The report's page (its template, style and Chart.js) with another script `js` drawing `data`
// (the sweep's page).
std::string render_page_html(const nlohmann::json& data, std::string_view js);

// The whole self-contained HTML page of a run; missing results.json is an error naming the file
// and the command that makes it.
std::string render_report(const RunDir& run);

// Writes the page to `out` (default run/report.html) atomically; returns the path.
fs::path write_report(const RunDir& run, const fs::path& out = {});

// `btx report`'s arguments (util/args.h).
struct ReportArgs {
  std::string run, out;
  template <typename V>
  void visit(V& v) {
    v.option("--run", run, "Run directory");
    v.option("--out", out, "Output file (default: <run>/report.html)");
  }
};

}  // namespace btx
