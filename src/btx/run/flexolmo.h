// FlexOlmo expert training (Shi et al. 2025, arXiv:2507.07024): an expert of [experts] mode =
// "flexolmo" is a two-expert MoE. Slot 0 is the seed's FFN (the anchor, frozen), slot 1 the
// expert's own FFN (the seed's to start with, trained); the embeddings, attention, norms and LM
// head stay the seed's. Each layer's router has one row per slot: row 0 (the anchor's) is the
// normalised mean FFN input of the seed on held-out text of every training domain and stays
// frozen, row 1 that of the expert's own domains and trains. Every expert starts from the same
// anchor and keeps it, so the `flexolmo` merge can concatenate their FFNs and router rows into
// one MoE with learned routing and no joint training.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>

#include "btx/model/config.h"
#include "btx/util/fs.h"

namespace btx {

inline constexpr int64_t kFlexolmoAnchor = 0;  // the slot of the seed's frozen FFN
inline constexpr int64_t kFlexolmoOwn = 1;     // the slot the expert trains
// Held-out windows per expert (and for the anchor) behind the router rows.
inline constexpr int64_t kFlexolmoInitWindows = 16;

// Writes out/model.safetensors and out/config.json: the two-expert model an expert trains, from
// the dense seed in `seed_dir` and held-out token windows (B, >= seq_len) of its own domains and
// of all training domains (the anchor's). Its output equals the seed's (both slots hold the
// seed's FFN and the gates sum to 1).
void write_flexolmo_expert(const fs::path& seed_dir, const torch::Tensor& own_windows,
                           const torch::Tensor& anchor_windows, int64_t seq_len,
                           const fs::path& out);

// Whether a parameter of such a model trains: the expert's own FFN (slot 1) and the routers
// (whose anchor row flexolmo_update_masks keeps frozen).
bool flexolmo_trains(const std::string& param);

// Per router of a model of config `c`, the trainer's update mask: 0 on the anchor's row.
std::map<std::string, torch::Tensor> flexolmo_update_masks(const ModelConfig& c);

}  // namespace btx
