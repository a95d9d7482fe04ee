// `btx report`: the study's self-contained HTML report; `btx analyze`: the analysis of one model
// (routing of a routed model, the posterior of an ensemble) that the report shows.
#include <algorithm>
#include <iostream>

#include "btx/analysis/analysis.h"
#include "btx/analysis/divergence.h"
#include "btx/analysis/report.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "cli/commands.h"

namespace btx::cli {

std::vector<Command> add_report_commands(CLI::App& app) {
  auto r = std::make_shared<ReportArgs>();
  auto* report = app.add_subcommand(
      "report",
      "The study's report as one self-contained HTML file: results, perplexity charts, training "
      "curves, routing heatmaps, token views and ensemble posteriors (needs results.json)");
  CliArgs report_options(report);
  r->visit(report_options);
  report_options["--run"]->required();

  auto a = std::make_shared<AnalyzeArgs>();
  auto* analyze = app.add_subcommand(
      "analyze",
      "Analyse routed models (routing per domain, token samples) and ensembles (posterior over "
      "the experts along a text), each with its per-token gain over the experts' average and "
      "the seed binned by the seed's entropy, for the report: writes "
      "<run>/analysis/<name>.json. With --divergence: how far the experts moved from the seed "
      "and from one another, per layer and parameter group (analysis/divergence.json)");
  CliArgs analyze_options(analyze);
  a->visit(analyze_options);
  analyze_options["--run"]->required();

  return {{report,
           [r] {
             const fs::path out = write_report(RunDir{r->run}, r->out);
             std::cout << "wrote " << out.string() << "\n";
           }},
          {analyze, [a] {
             const Run run = Run::open(a->run);
             if (a->divergence) {
               BTX_CHECK(a->models.empty(),
                         "--divergence compares the run's experts with its seed: give no --model");
               const auto result = divergence_analysis(run);
               write_analysis(divergence_path(run), result, false, format_divergence(result));
               return;
             }
             std::vector<std::string> models = a->models;
             if (models.empty() && fs::is_directory(run.root / "merged")) {
               for (const auto& e : fs::directory_iterator(run.root / "merged")) {
                 if (e.is_directory() && has_analysis(ModelFolder::open(e.path()))) {
                   models.push_back("merged/" + e.path().filename().string());
                 }
               }
               std::sort(models.begin(), models.end());
             }
             BTX_CHECK(!models.empty(), "{}: no routed model or ensemble to analyse",
                       (run.root / "merged").string());
             for (const auto& m : models) {
               const fs::path model = resolve_model_path(run, m);
               const std::string name = eval_name(model);
               const auto result = model_analysis(run, ModelFolder::open(model));
               const fs::path out = analysis_path(run, name);
               write_file_atomic(
                   out, result.dump(1, ' ', false, nlohmann::json::error_handler_t::replace));
               std::cout << "wrote " << out.string() << "\n";
             }
           }}};
}

}  // namespace btx::cli
