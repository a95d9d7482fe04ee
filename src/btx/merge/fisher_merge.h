// Fisher-weighted averaging (Matena & Raffel 2022, arXiv:2111.09832): the merge of dense
// checkpoints that weighs each parameter element by how much each model's fit to its own data
// depends on it, θ = Σ_i F_i θ_i / Σ_i F_i, F_i the diagonal Fisher of checkpoint i on held-out
// text of its own domains (train/fisher.h). Where the uniform average dilutes what each expert
// learned for its domain (the embedding rows of its own tokens, say), this keeps it where only
// that expert cares. Elements where every F_i is negligible (below 1e-6 of the tensor's mean
// total) get the uniform mean. The `fisher` merge method is this average; `btx --shared fisher`
// uses it for the layers an MoE merge shares.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "btx/merge/method.h"
#include "btx/merge/moe_build.h"

namespace btx {

// Writes the Fisher-weighted average of the slots' checkpoints (each with its domains' held-out
// windows, `windows` per slot split over its domains) to out/ as a dense checkpoint. Returns
// what merge.json records: the windows and, per parameter group (embedding, attention, norms,
// ffn), each slot's mean normalised weight.
nlohmann::json fisher_average(const MergeContext& ctx, const std::vector<MoeSlot>& slots,
                              int64_t windows, const fs::path& out);

}  // namespace btx
