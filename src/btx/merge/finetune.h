// MoE finetuning (BTX): a merged MoE model (btx, upcycle) trains further on the balanced domain
// mixture with the run's [finetune] settings, in place in its merged/<name>/ folder (like an
// expert in its folder: the merge is the starting point, checkpoints replace it), resumable.
// All parameters train (BTX's default) or only the routers.
#pragma once

#include <filesystem>
#include <string>

#include "btx/run/run_dir.h"
#include "btx/train/trainer.h"

namespace btx {

// `train_what`: "all" or "router".
TrainResult finetune_model(const RunDir& run, const RunConfig& c, const fs::path& model_dir,
                           const std::string& train_what, bool resume, int64_t stop_after = 0);

}  // namespace btx
