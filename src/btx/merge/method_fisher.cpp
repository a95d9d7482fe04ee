// `fisher`: Fisher-weighted averaging (Matena & Raffel 2022), the routing-free merge that weighs
// each parameter element by each expert's diagonal Fisher on its own domain's held-out text
// instead of equally: one dense model, no routing. What a smarter routing-free average buys
// back, next to the uniform `average`.
#include "btx/merge/fisher_merge.h"
#include "btx/merge/method.h"
#include "btx/merge/moe_build.h"
#include "btx/util/error.h"

namespace btx {

Param fisher_windows_param() {
  return integer_param("fisher-windows", "32",
                       "held-out windows per expert on which its Fisher information is estimated",
                       1);
}

nlohmann::json build_moe_with_shared(const MergeContext& ctx, const std::vector<MoeSlot>& slots,
                                     const MoeBuildOptions& opts, const fs::path& out) {
  const std::string& how = ctx.params.text("shared");
  if (how == "seed") return build_moe(ctx, {{ctx.run.seed(), 1.0}}, slots, opts, out);
  if (how == "average") return build_moe(ctx, ctx.uniform_inputs(), slots, opts, out);
  BTX_CHECK(how == "fisher", "--shared '{}': expected average, seed or fisher", how);
  const fs::path dir = out / "fisher-shared";
  const auto fisher = fisher_average(ctx, expert_moe_slots(ctx, /*from_seed=*/false),
                                     ctx.params.integer("fisher-windows"), dir);
  auto record = build_moe(ctx, {{dir, 1.0}}, slots, opts, out);
  fs::remove_all(dir);
  record["shared_fisher"] = fisher;
  return record;
}

Param shared_param() {
  return choice_param("shared", "average", {"average", "seed", "fisher"},
                      "the layers the experts share (attention, norms, embeddings; BAM: norms and "
                      "embeddings): their uniform average (BTX), their Fisher-weighted average "
                      "(each expert's weight per element its Fisher on its own domain), or the "
                      "seed's own (which the experts' FFNs were not trained with)");
}

MergeMethod fisher_method() {
  MergeMethod m;
  m.name = "fisher";
  m.description =
      "Fisher-weighted mean of every expert parameter (each expert's diagonal Fisher on its own "
      "domain's held-out text): one dense model, no routing";
  m.paper =
      "Matena & Raffel 2022, Merging Models with Fisher-Weighted Averaging (arXiv:2111.09832)";
  m.params = {fisher_windows_param()};
  m.build = [](const MergeContext& ctx, const fs::path& out) {
    auto record = fisher_average(ctx, expert_moe_slots(ctx, /*from_seed=*/false),
                                 ctx.params.integer("fisher-windows"), out);
    record["kind"] = "checkpoint";
    return record;
  };
  return m;
}

}  // namespace btx
