#include "btx/analysis/analysis.h"

#include "btx/analysis/routing.h"
#include "btx/analysis/token_gain.h"
#include "btx/data/tokenizer.h"
#include "btx/eval/ensemble.h"
#include "btx/model/router.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"

namespace btx {

namespace {

nlohmann::json ensemble_analysis(const Run& run, const ModelFolder& model) {
  const RunConfig& c = run.config();
  torch::NoGradGuard no_grad;
  const auto names = model.expert_names();
  const auto& experts = model.experts();
  for (CausalLM m : experts) m->eval();
  const auto E = static_cast<int64_t>(experts.size());
  BTX_CHECK(E >= 1, "{}: the ensemble names no expert", (model.path() / "merge.json").string());
  const int64_t n = std::min(kAnalysisPosteriorTokens, c.seed_train.seq_len);
  const auto uniform = torch::full({E}, -std::log(static_cast<double>(E)), torch::kFloat64);
  const Tokenizer& tok = run.tokenizer();

  std::vector<std::string> domains, novel;
  nlohmann::json samples = nlohmann::json::object();
  for (const auto& [d, is_novel, windows] : analysis_windows(run, run_novel_domains(c), 1)) {
    domains.push_back(d);
    if (is_novel) novel.push_back(d);
    const auto x = windows.narrow(0, 0, 1).narrow(1, 0, n + 1);  // (1, n+1)
    std::vector<torch::Tensor> ll;
    for (CausalLM m : experts) ll.push_back(-token_nll(m, x));
    // (E, 1, n): row t is p(j | x_0..x_t), the weights that predict x_{t+1}.
    const auto w = ensemble_log_weights(torch::stack(ll), EnsemblePrior::kUpdating, uniform, 0)
                       .exp()
                       .squeeze(1)
                       .t()
                       .contiguous();  // (n, E)
    nlohmann::json posterior = nlohmann::json::array();
    for (int64_t t = 0; t < n; ++t) {
      const double* row = w[t].data_ptr<double>();
      posterior.push_back(std::vector<double>(row, row + E));
    }
    std::vector<std::string> pieces;
    for (int64_t t = 0; t <= n; ++t)
      pieces.push_back(piece_for_display(tok, x[0][t].item<int64_t>()));
    samples[d] = {{"pieces", pieces}, {"posterior", posterior}};
  }
  return {{"kind", "ensemble"}, {"model", eval_name(model.path())}, {"experts", names},
          {"domains", domains}, {"novel_domains", novel},           {"samples", samples}};
}

}  // namespace

AnalysisKind analysis_kind(bool ensemble, const RouterTraits* router) {
  if (ensemble) return AnalysisKind::kPosterior;
  // A router whose choice is the text's label has nothing to show.
  if (router && !router->needs_labels) return AnalysisKind::kRouting;
  return AnalysisKind::kNone;
}

AnalysisKind analysis_kind(const ModelFolder& model) {
  if (model.kind() == ModelKind::kEnsemble) return analysis_kind(true, nullptr);
  if (!is_checkpoint(model.path())) return AnalysisKind::kNone;
  const ModelConfig& config = model.config();
  return analysis_kind(false, config.is_routed() ? &config.router() : nullptr);
}

bool has_analysis(const ModelFolder& model) {
  return analysis_kind(model) != AnalysisKind::kNone;
}

fs::path analysis_path(const RunDir& run, const std::string& eval_name) {
  return run.root / "analysis" / (eval_name + ".json");
}

nlohmann::json model_analysis(const Run& run, const ModelFolder& model) {
  const RunConfig& c = run.config();
  const AnalysisKind kind = analysis_kind(model);
  if (kind == AnalysisKind::kPosterior) {
    auto out = ensemble_analysis(run, model);
    out["token_gain"] = token_gain_analysis(run, model, {});
    return out;
  }
  const fs::path& model_dir = model.path();
  BTX_CHECK(kind != AnalysisKind::kNone,
            "{}: nothing to analyse (analysis covers MoE and SMEAR models with a learned or hashed "
            "router, and ensembles)",
            model_dir.string());
  RoutingOptions opts;
  opts.novel = run_novel_domains(c);
  opts.sample_tokens = kAnalysisSampleTokens;
  auto out = routing_analysis(run, model, opts);
  out["kind"] = "routing";
  out["model"] = eval_name(model_dir);
  // Sequence-level routers read the whole window: their per-token gains are not comparable.
  if (model.config().is_causal()) out["token_gain"] = token_gain_analysis(run, model, {});
  return out;
}

}  // namespace btx
