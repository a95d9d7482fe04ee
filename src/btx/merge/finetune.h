// MoE finetuning (BTX): a merged MoE model (btx, upcycle) trains further on the balanced domain
// mixture with the run's [finetune] settings, in place in its merged/<name>/ folder (like an
// expert in its folder: the merge is the starting point, checkpoints replace it), resumable.
// All parameters train (BTX's default), only the routers, or the routers and the shared layers
// with the expert FFNs frozen (BTX's ablation: freezing them costs little while the averaged
// layers and the routers adapt). Frozen parameters get no gradient and no optimizer state, so
// they leave finetuning bitwise as they came.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "btx/run/run_dir.h"
#include "btx/train/trainer.h"

namespace btx {

// What `--train` may choose (model/param_roles.h's selections).
const std::vector<std::string>& finetune_selections();
// "all (every parameter) | router (...) | ...": the help text of the choices.
std::string finetune_selections_help();

// `train_what`: one of finetune_selections(); another is an error listing them.
TrainResult finetune_model(const Run& run, const fs::path& model_dir, const std::string& train_what,
                           bool resume, int64_t stop_after = 0);

}  // namespace btx
