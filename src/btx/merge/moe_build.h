// Building a mixture-of-experts checkpoint from dense checkpoints (BTX; Sukhbaatar et al. 2024,
// arXiv:2403.07816): expert slot j of every layer takes the dense FFN of one source checkpoint
// (mlp.gate_proj / up_proj / down_proj -> block_sparse_moe.experts.j.w1 / w3 / w2); every other
// tensor (embeddings, attention, norms, LM head) is the average of the `shared` checkpoints; a
// new router per layer is initialised `random` (normal(0, initializer_range)), `centroid` (row
// j = the normalised mean FFN input of slot j's domains when every token is sent to expert j, so
// routing starts where the domains are) or `ridge` (DUME; arXiv:2603.29765: the closed-form
// least-squares map from those FFN inputs to one-hot expert labels). With attention experts
// (BAM), slot j's attention joins too. Streams like the parameter average.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/merge/method.h"
#include "btx/merge/param_average.h"

namespace btx {

struct MoeSlot {
  std::string name;                  // shown in merge.json and routing analyses
  fs::path checkpoint;               // its dense FFN comes from here
  std::vector<std::string> domains;  // the data it stands for (centroid init)
};

struct MoeBuildOptions {
  ModelType model_type = ModelType::kMixtral;  // MoE FFN, or SMEAR's merged-expert FFN
  double expert_dropout = 0.0;                 // smear only
  int64_t top_k = 2;
  std::string router_mode = "top-k";
  double aux_loss = 0.01;
  double z_loss = 0.0;
  std::string router_init = "random";  // random | centroid | ridge
  int64_t centroid_windows = 16;       // held-out windows per slot for centroid and ridge
  double ridge_lambda = 0.01;          // ridge: λ relative to the mean eigenvalue of XᵀX
  uint64_t seed = 0;                   // random router init
  // BAM: slot j's attention (q, k, v, o) too becomes attention expert j of each layer, mixed by
  // a soft router (random init); only norms and embeddings are averaged. mixtral only.
  bool attention_experts = false;
  // Null experts (model/router.h, route_top_k_null): M null slots beside the N experts, their
  // router row starting at zero. top-k routers only.
  int64_t null_experts = 0;
  // MetaMoE's context-aware router input; λ starts at sigmoid(-2) = 0.12.
  bool router_context = false;
};

// Writes out/model.safetensors and out/config.json; returns what merge.json records.
nlohmann::json build_moe(const MergeContext& ctx, const std::vector<WeightedCheckpoint>& shared,
                         const std::vector<MoeSlot>& slots, const MoeBuildOptions& opts,
                         const fs::path& out);

// Up to `windows` held-out windows (n, T+1) of a slot's domains, split evenly over them (a
// training domain's validation split, a novel domain's set-aside chunks); none is an error
// naming `what` needs them.
torch::Tensor slot_heldout_windows(const MergeContext& ctx, const MoeSlot& slot, int64_t windows,
                                   int64_t seq_len, const std::string& what);

// One slot per expert of the run, standing for the domains it trained on: its FFN from the
// expert itself, or (sparse upcycling) from the seed.
std::vector<MoeSlot> expert_moe_slots(const MergeContext& ctx, bool from_seed);

// build_moe() with the shared layers its --shared parameter names (btx, bam, tag, hash): the
// experts' uniform average, the seed, or their Fisher-weighted average (merge/fisher_merge.h,
// built in out/fisher-shared while the MoE is written, then removed; merge.json records its
// weights as "shared_fisher").
nlohmann::json build_moe_with_shared(const MergeContext& ctx, const std::vector<MoeSlot>& slots,
                                     const MoeBuildOptions& opts, const fs::path& out);
// The --shared and --fisher-windows declarations.
Param shared_param();
Param fisher_windows_param();

// The learned MoE router that a btx-style method's --router names (btx, upcycle, bam).
const RouterTraits& mixtral_router(const ParamValues& params);

// The MoE options of a method's parameters (top-k, router, aux-loss, z-loss, router-init).
MoeBuildOptions moe_options(const MergeContext& ctx, const std::string& tag);
// Those parameters' declarations, shared by btx and upcycle.
std::vector<Param> moe_params(const std::string& default_init);
// The router-init and ridge-lambda declarations (also SMEAR's).
Param router_init_param(const std::string& default_init);
Param ridge_lambda_param();

// The ridge-regression router (E, C) float32 from each slot's FFN-input statistics: grams[j] =
// X_jᵀX_j (C, C) and sums[j] = X_jᵀ1 (C) of the tokens X_j labelled expert j. Solves
// W = (XᵀX + λ'I)⁻¹XᵀY for X the stacked X_j and Y their one-hot labels, with λ' = lambda times
// the mean eigenvalue of XᵀX (trace / C), and returns Wᵀ: logits h·Wᵀ estimate h's labels.
torch::Tensor ridge_router_weights(const std::vector<torch::Tensor>& grams,
                                   const std::vector<torch::Tensor>& sums, double lambda);

}  // namespace btx
