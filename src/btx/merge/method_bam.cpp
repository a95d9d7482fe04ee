// `bam`: Branch-Attend-Mix. Like btx, the experts' FFNs become each layer's MoE experts behind a
// learned top-k router; unlike btx, their attention is not averaged either: each expert's
// attention stays whole as one of the layer's attention experts, mixed per token by a soft router
// (attention_experts.h). Only norms and embeddings are averaged. Finetuned like btx.
#include "btx/merge/method.h"
#include "btx/merge/moe_build.h"

namespace btx {

MergeMethod bam_method() {
  MergeMethod m;
  m.name = "bam";
  m.router = mixtral_router;
  m.description =
      "one model with the experts' FFNs as MoE experts (top-k router) and their attention as "
      "attention experts (soft router); norms and embeddings averaged; finetune like btx. Not a "
      "Hugging Face architecture: export refuses it";
  m.paper =
      "Zhang et al. 2024, BAM! Just Like That: Simple and Efficient Parameter Upcycling "
      "for Mixture of Experts (arXiv:2408.08274)";
  m.params = moe_params("random");
  m.params.push_back(shared_param());
  m.params.push_back(fisher_windows_param());
  m.build = [](const MergeContext& ctx, const fs::path& out) {
    MoeBuildOptions o = moe_options(ctx, ctx.output_name);
    o.attention_experts = true;
    return build_moe_with_shared(ctx, expert_moe_slots(ctx, /*from_seed=*/false), o, out);
  };
  return m;
}

}  // namespace btx
