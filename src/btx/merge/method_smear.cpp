// `smear`: SMEAR (Muqeeth et al. 2023). The experts' FFNs become the experts of one merged-expert
// FFN per layer (model/smear.h), the rest is averaged as in btx, and a new router per layer
// learns (in `btx finetune`) the merge weights from the mean of the prefix (or, not causal, of
// the whole sequence).
#include "btx/merge/method.h"
#include "btx/merge/moe_build.h"
#include "btx/model/router.h"
#include "btx/util/error.h"

namespace btx {

MergeMethod smear_method() {
  MergeMethod m;
  m.name = "smear";
  m.router = [](const ParamValues& params) -> const RouterTraits& {
    return router_traits(ModelType::kSmear, params.text("router"), "--router");
  };
  m.description =
      "one model whose FFN is the experts' FFNs averaged with router weights (per prefix: "
      "causal), everything else averaged; finetune it with `btx finetune`";
  m.paper =
      "Muqeeth, Liu, Raffel 2023, Soft Merging of Experts with Adaptive Routing "
      "(arXiv:2306.03745)";
  m.params = {
      choice_param("router", "prefix", router_names(ModelType::kSmear),
                   router_help(ModelType::kSmear)),
      router_init_param("random"),
      ridge_lambda_param(),
      real_param("expert-dropout", "0.1",
                 "drop each merge weight with this probability in training", 0, 1,
                 /*min_open=*/false, /*max_open=*/true),
  };
  m.build = [](const MergeContext& ctx, const fs::path& out) {
    MoeBuildOptions o;
    o.model_type = ModelType::kSmear;
    o.router_mode = ctx.params.text("router");
    o.router_init = ctx.params.text("router-init");
    o.ridge_lambda = ctx.params.real("ridge-lambda");
    o.expert_dropout = ctx.params.real("expert-dropout");
    o.aux_loss = 0;
    o.seed = derive_seed(ctx.run.config().seed, "router/" + ctx.output_name);
    return build_moe(ctx, ctx.uniform_inputs(), expert_moe_slots(ctx, /*from_seed=*/false), o, out);
  };
  return m;
}

}  // namespace btx
