// `weighted-average`: a parameter average weighted by given weights, or, as in BTM, by the
// domain posterior of the experts on a target domain's held-out text. `--target each` is BTM's
// evaluation protocol: every evaluated domain gets the average weighted by its own posterior.
#include <spdlog/spdlog.h>

#include <sstream>

#include "btx/eval/ensemble.h"
#include "btx/merge/method.h"
#include "btx/merge/param_average.h"
#include "btx/run/experts.h"
#include "btx/util/error.h"

namespace btx {

namespace {
// "a=0.7,b=0.3" -> one weight per expert, every expert named exactly once.
std::map<std::string, double> parse_weights(const std::string& text,
                                            const std::vector<std::string>& experts) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    const auto eq = item.find('=');
    BTX_CHECK(eq != std::string::npos && eq > 0, "--weights: '{}' must be EXPERT=WEIGHT", item);
    const std::string name = item.substr(0, eq);
    BTX_CHECK(std::find(experts.begin(), experts.end(), name) != experts.end(),
              "--weights: no expert '{}' (the experts: {})", name, fmt::join(experts, ", "));
    BTX_CHECK(!out.count(name), "--weights: expert '{}' given twice", name);
    size_t used = 0;
    double w = -1;
    try {
      w = std::stod(item.substr(eq + 1), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    BTX_CHECK(used > 0 && used == item.size() - eq - 1 && std::isfinite(w),
              "--weights: weight of '{}' is not a number: '{}'", name, item.substr(eq + 1));
    BTX_CHECK(w >= 0, "--weights: weight of '{}' is negative ({})", name, w);
    out[name] = w;
  }
  for (const auto& e : experts) {
    BTX_CHECK(out.count(e), "--weights: expert '{}' has no weight (give one for each of: {})", e,
              fmt::join(experts, ", "));
  }
  double total = 0;
  for (const auto& [n, w] : out) total += w;
  BTX_CHECK(total > 0, "--weights: all weights are zero");
  return out;
}
}  // namespace

MergeMethod weighted_average_method() {
  MergeMethod m;
  m.expert_modes = {ExpertMode::kAll, ExpertMode::kFfn,
                    ExpertMode::kFlexolmo};  // any experts of one shape
  m.name = "weighted-average";
  m.description =
      "parameter mean weighted by given weights or by the experts' domain posterior on a target "
      "domain: one dense model, no routing at inference";
  m.paper = "Li et al. 2022, Branch-Train-Merge (arXiv:2208.03306)";
  m.params = {
      text_param("weights", "EXPERT=W,... one weight per expert (normalised)"),
      text_param("target",
                 "a domain of the run: weight by the posterior on its held-out text; 'each': "
                 "every evaluated domain gets its own posterior weights (BTM's protocol)"),
  };
  for (auto& p : posterior_params()) m.params.push_back(std::move(p));
  m.check_params = [](const ParamValues& p) {
    BTX_CHECK(p.has("weights") != p.has("target"),
              "weighted-average needs exactly one of --weights EXPERT=W,... or --target DOMAIN "
              "(or --target each)");
  };
  m.build = [](const MergeContext& ctx, const fs::path& out) {
    const double alpha = ctx.params.real("alpha");
    const int64_t windows = ctx.params.integer("prior-windows");
    validate_ensemble_options({EnsemblePrior::kCached, 0, alpha, windows},
                              static_cast<int64_t>(ctx.experts.size()));
    const auto names = ctx.expert_names();
    if (ctx.params.text("target") == "each") {
      return nlohmann::json{{"kind", "posterior-average"}, {"target", "each"}};
    }
    std::map<std::string, double> weights;
    if (ctx.params.has("weights")) {
      weights = parse_weights(ctx.params.text("weights"), names);
    } else {
      weights = expert_posterior(ctx.run, names, {ctx.params.text("target")}, windows, alpha);
      spdlog::info("posterior on '{}': {}", ctx.params.text("target"),
                   nlohmann::json(weights).dump());
    }
    std::vector<WeightedCheckpoint> inputs;
    for (const auto& e : ctx.experts) inputs.push_back({e.dir, weights.at(e.name)});
    average_checkpoints(inputs, out);
    nlohmann::json r = {{"kind", "checkpoint"}, {"weights", weights}};
    if (ctx.params.has("target")) r["target"] = ctx.params.text("target");
    return r;
  };
  return m;
}

}  // namespace btx
