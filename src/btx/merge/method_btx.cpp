// `btx`: Branch-Train-MiX. The experts' FFNs become the experts of one MoE layer per block, the
// rest is averaged, and a new router per layer learns (in `btx finetune`) which experts each token
// uses. Optionally the seed's FFN joins as one more, generalist expert.
// --data-sparsity ρ < 1 adds null experts (Kilian et al. 2026, "Improving MoE Compute Efficiency
// by Composing Weight and Data Sparsity", arXiv:2601.15370): M = N(1-ρ)/ρ slots (rounded) that
// compute nothing, routed by top-k beside the N experts, so that a token runs 0..k experts and
// load balancing holds the real share of choices near ρ = N / (N + M).
#include <cmath>

#include "btx/merge/method.h"
#include "btx/merge/moe_build.h"
#include "btx/util/error.h"

namespace btx {

const RouterTraits& mixtral_router(const ParamValues& params) {
  return router_traits(ModelType::kMixtral, params.text("router"), "--router");
}

MergeMethod btx_method() {
  MergeMethod m;
  m.name = "btx";
  m.router = mixtral_router;
  m.description =
      "one MoE model: each layer's experts are the experts' FFNs, everything else averaged, a new "
      "token-level router (finetune it with `btx finetune`)";
  m.paper = "Sukhbaatar et al. 2024, Branch-Train-MiX (arXiv:2403.07816)";
  m.params = moe_params("random");
  m.params.push_back(choice_param("seed-expert", "no", {"no", "yes"},
                                  "also keep the seed's FFN as a generalist expert"));
  m.params.push_back(shared_param());
  m.params.push_back(fisher_windows_param());
  m.params.push_back(real_param("data-sparsity", "1",
                                "ρ, the share of top-k choices that run an expert: < 1 adds "
                                "N(1-ρ)/ρ null experts (rounded) that compute nothing (top-k "
                                "router only)",
                                0, 1, /*min_open=*/true));
  m.params.push_back(choice_param("router-context", "no", {"no", "yes"},
                                  "MetaMoE's context-aware router input: (1-λ)·h_t + λ·(mean of "
                                  "the prefix), λ learned"));
  m.build = [](const MergeContext& ctx, const fs::path& out) {
    auto slots = expert_moe_slots(ctx, /*from_seed=*/false);
    if (ctx.params.flag("seed-expert")) {
      slots.push_back({"seed", ctx.run.seed(), ctx.run.config().corpus.domains});
    }
    MoeBuildOptions o = moe_options(ctx, ctx.output_name);
    o.router_context = ctx.params.flag("router-context");
    const double rho = ctx.params.real("data-sparsity");
    const double n = static_cast<double>(slots.size());
    o.null_experts = std::llround(n * (1 - rho) / rho);
    BTX_CHECK(o.null_experts == 0 || o.router_mode == "top-k",
              "--data-sparsity {}: null experts need --router top-k, not {}",
              ctx.params.given("data-sparsity"), o.router_mode);
    auto record = build_moe_with_shared(ctx, slots, o, out);
    if (o.null_experts > 0) {
      record["data_sparsity"] = {{"asked", rho},
                                 {"null_experts", o.null_experts},
                                 {"effective", n / (n + static_cast<double>(o.null_experts))}};
    }
    return record;
  };
  return m;
}

MergeMethod upcycle_method() {
  MergeMethod m;
  m.name = "upcycle";
  m.router = mixtral_router;
  m.from_experts = false;
  m.description =
      "sparse upcycling: an MoE whose experts are all copies of the seed's FFN (no expert "
      "training), finetuned like btx: what the expert training bought";
  m.paper = "Komatsuzaki et al. 2022, Sparse Upcycling (arXiv:2212.05055)";
  m.params = moe_params("random");
  m.build = [](const MergeContext& ctx, const fs::path& out) {
    return build_moe(ctx, {{ctx.run.seed(), 1.0}}, expert_moe_slots(ctx, /*from_seed=*/true),
                     moe_options(ctx, ctx.output_name), out);
  };
  return m;
}

namespace {
// An MoE of the experts' FFNs whose routing is fixed, not learned: one expert per token.
MergeMethod fixed_routing_method(const std::string& mode) {
  MergeMethod m;
  m.name = mode;
  m.router = [mode](const auto&) -> const RouterTraits& {
    return router_traits(ModelType::kMixtral, mode, "--method");
  };
  m.params = {shared_param(), fisher_windows_param()};
  m.build = [mode](const MergeContext& ctx, const fs::path& out) {
    MoeBuildOptions o;
    o.top_k = 1;
    o.router_mode = mode;
    o.aux_loss = 0;
    o.seed = derive_seed(ctx.run.config().seed, "router/" + ctx.output_name);
    return build_moe_with_shared(ctx, expert_moe_slots(ctx, /*from_seed=*/false), o, out);
  };
  return m;
}
}  // namespace

MergeMethod tag_method() {
  MergeMethod m = fixed_routing_method("tag");
  m.description =
      "the btx MoE routed by the sequence's domain label: each domain's text goes to its own "
      "expert (an oracle on labelled data; unlabelled text goes to the expert with the best "
      "held-out loss)";
  m.paper =
      "Gururangan et al. 2021, DEMix (arXiv:2108.05036); Muqeeth et al. 2023, SMEAR "
      "(arXiv:2306.03745), tag routing";
  return m;
}

MergeMethod hash_method() {
  MergeMethod m = fixed_routing_method("hash");
  m.description = "the btx MoE routed by a fixed hash of the token id (no learning)";
  m.paper = "Roller et al. 2021, Hash Layers (arXiv:2106.04426)";
  return m;
}

}  // namespace btx
