// `btx`: Branch-Train-MiX. The experts' FFNs become the experts of one MoE layer per block, the
// rest is averaged, and a new router per layer learns (in `btx finetune`) which experts each token
// uses. Optionally the seed's FFN joins as one more, generalist expert.
#include "btx/merge/method.h"
#include "btx/merge/moe_build.h"
#include "btx/pipeline/experts.h"

namespace btx {

namespace {
std::vector<std::string> trained_domains(const ExpertSpec& spec) {
  std::vector<std::string> out;
  for (const auto& [d, w] : spec.domains) {
    if (w > 0) out.push_back(d);
  }
  return out;
}

// One slot per expert of the run: its FFN from the expert itself, or (upcycling) from the seed.
std::vector<MoeSlot> expert_slots(const MergeContext& ctx, bool from_seed) {
  std::vector<MoeSlot> slots;
  for (const auto& e : ctx.experts) {
    slots.push_back({e.name, from_seed ? ctx.run.seed() : e.dir,
                     trained_domains(find_expert(ctx.run, e.name))});
  }
  return slots;
}
}  // namespace

MergeMethod btx_method() {
  MergeMethod m;
  m.name = "btx";
  m.description =
      "one MoE model: each layer's experts are the experts' FFNs, everything else averaged, a new "
      "token-level router (finetune it with `btx finetune`)";
  m.paper = "Sukhbaatar et al. 2024, Branch-Train-MiX (arXiv:2403.07816)";
  m.params = moe_params("random");
  m.params.push_back(
      {"seed-expert", "also keep the seed's FFN as a generalist expert", "no", {"no", "yes"}});
  m.build = [](const MergeContext& ctx, const fs::path& out) {
    std::vector<WeightedCheckpoint> shared;
    for (const auto& e : ctx.experts) shared.push_back({e.dir, 1.0});
    auto slots = expert_slots(ctx, /*from_seed=*/false);
    if (ctx.str("seed-expert") == "yes") {
      slots.push_back({"seed", ctx.run.seed(), ctx.config.corpus.domains});
    }
    return build_moe(ctx, shared, slots, moe_options(ctx, ctx.output_name), out);
  };
  return m;
}

MergeMethod upcycle_method() {
  MergeMethod m;
  m.name = "upcycle";
  m.description =
      "sparse upcycling: an MoE whose experts are all copies of the seed's FFN (no expert "
      "training), finetuned like btx: what the expert training bought";
  m.paper = "Komatsuzaki et al. 2022, Sparse Upcycling (arXiv:2212.05055)";
  m.params = moe_params("random");
  m.build = [](const MergeContext& ctx, const fs::path& out) {
    return build_moe(ctx, {{ctx.run.seed(), 1.0}}, expert_slots(ctx, /*from_seed=*/true),
                     moe_options(ctx, ctx.output_name), out);
  };
  return m;
}

}  // namespace btx
