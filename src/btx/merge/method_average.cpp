// `average`: the uniform mean of every expert parameter, one dense model (the routing-free merge
// that BTM and model soups start from; it fails when the experts have drifted apart).
#include "btx/merge/method.h"
#include "btx/merge/param_average.h"

namespace btx {

MergeMethod average_method() {
  MergeMethod m;
  m.expert_modes = {ExpertMode::kAll, ExpertMode::kFfn,
                    ExpertMode::kFlexolmo};  // any experts of one shape
  m.name = "average";
  m.description = "uniform mean of every expert parameter: one dense model, no routing";
  m.paper =
      "Li et al. 2022, Branch-Train-Merge (arXiv:2208.03306); Wortsman et al. 2022, "
      "model soups (arXiv:2203.05482)";
  m.build = [](const MergeContext& ctx, const fs::path& out) {
    nlohmann::json weights = nlohmann::json::object();
    for (const auto& e : ctx.experts)
      weights[e.name] = 1.0 / static_cast<double>(ctx.experts.size());
    average_checkpoints(ctx.uniform_inputs(), out);
    return nlohmann::json{{"kind", "checkpoint"}, {"weights", weights}};
  };
  return m;
}

}  // namespace btx
