// `ensemble`: BTM's ELMforest. The experts stay apart; merged/<name>/ only describes the
// mixture (which experts, which prior, top-k), and open_scorer() loads it as a model.
#include "btx/eval/ensemble.h"
#include "btx/merge/method.h"
#include "btx/run/model_scorer.h"

namespace btx {

MergeMethod ensemble_method() {
  MergeMethod m;
  m.expert_modes = {ExpertMode::kAll, ExpertMode::kFfn,
                    ExpertMode::kFlexolmo};  // any experts of one shape
  m.name = "ensemble";
  m.ensemble = true;
  m.description =
      "the experts kept apart, their next-token probabilities mixed by a domain posterior over "
      "the prefix (uniform / updating / cached prior, top-k)";
  m.paper =
      "Li et al. 2022, Branch-Train-Merge (arXiv:2208.03306); Gururangan et al. 2021, "
      "DEMix (arXiv:2108.05036); the cluster prior: Gururangan et al. 2023, c-BTM "
      "(arXiv:2303.14177)";
  m.params = ensemble_params();
  m.build = [](const MergeContext& ctx, const fs::path&) {
    const EnsembleOptions o = ensemble_options(ctx.params);
    validate_ensemble_options(o, static_cast<int64_t>(ctx.experts.size()));
    const auto n = static_cast<int64_t>(ctx.experts.size());
    const bool all =
        o.top_k == 0 || o.prior == EnsemblePrior::kUpdating || o.prior == EnsemblePrior::kCluster;
    nlohmann::json record = {{"kind", "ensemble"}, {"experts_run_per_token", all ? n : o.top_k}};
    if (o.prior == EnsemblePrior::kCluster) {  // checked now, not first when it is evaluated
      const fs::path path = ensemble_cluster_model_path(ctx.run.root, o.cluster_model);
      cluster_order(ClusterModel::load(path), ctx.expert_names(), o.cluster_model);
      record["cluster_model"] = fs::absolute(path).string();
    }
    return record;
  };
  return m;
}

}  // namespace btx
