// `ensemble`: BTM's ELMforest. The experts stay apart; merged/<name>/ only describes the
// mixture (which experts, which prior, top-k), and open_scorer() loads it as a model.
#include "btx/eval/ensemble.h"
#include "btx/merge/method.h"

namespace btx {

MergeMethod ensemble_method() {
  MergeMethod m;
  m.expert_modes = {"all", "ffn", "flexolmo"};  // any experts of one shape
  m.name = "ensemble";
  m.ensemble = true;
  m.description =
      "the experts kept apart, their next-token probabilities mixed by a domain posterior over "
      "the prefix (uniform / updating / cached prior, top-k)";
  m.paper =
      "Li et al. 2022, Branch-Train-Merge (arXiv:2208.03306); Gururangan et al. 2021, "
      "DEMix (arXiv:2108.05036)";
  m.params = {
      choice_param("prior", "cached", {"uniform", "updating", "cached"},
                   "uniform | updating (Bayes over the prefix) | cached (EMA, then fixed)"),
      integer_param("top-k", "0", "keep the k most probable experts and renormalise (0: all)", 0),
      real_param("alpha", "0.3", "cached prior: EMA rate over the held-out sequences", 0, 1,
                 /*min_open=*/true),
      integer_param("prior-windows", "16", "cached prior: held-out sequences of the target domain",
                    1),
  };
  m.build = [](const MergeContext& ctx, const fs::path&) {
    EnsembleOptions o;
    o.prior = parse_ensemble_prior(ctx.str("prior"));
    o.top_k = ctx.integer("top-k");
    o.alpha = ctx.real("alpha");
    o.prior_windows = ctx.integer("prior-windows");
    validate_ensemble_options(o, static_cast<int64_t>(ctx.experts.size()));
    const auto n = static_cast<int64_t>(ctx.experts.size());
    const bool all = o.top_k == 0 || o.prior == EnsemblePrior::kUpdating;
    return nlohmann::json{{"kind", "ensemble"}, {"experts_run_per_token", all ? n : o.top_k}};
  };
  return m;
}

}  // namespace btx
