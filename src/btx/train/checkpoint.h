// Checkpoint folders: model.safetensors (HF tensor names) + config.json (HF keys), and, when
// resumable, optimizer.safetensors + state.json. A folder is always written whole to a temporary
// name and renamed into place, so a crash never leaves a half checkpoint where a good one was.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "btx/model/llama.h"
#include "btx/model/stitch.h"
#include "btx/train/adamw.h"

namespace btx {

namespace fs = std::filesystem;

inline constexpr int kCheckpointFormatVersion = 1;

struct TrainState {
  int64_t step = 0;        // optimizer steps done
  int64_t tokens = 0;      // training tokens consumed
  uint64_t data_seed = 0;  // the sampler's seed; with `step` it fixes the data position
  bool done = false;       // training reached its last step
  nlohmann::json extra = nlohmann::json::object();  // stage-specific fields

  nlohmann::json to_json() const;
  static TrainState from_json(const nlohmann::json& j, const std::string& where);
};

struct CheckpointContents {
  const CausalLM* model = nullptr;
  const AdamW* optimizer = nullptr;   // optional
  const TrainState* state = nullptr;  // optional
  std::vector<fs::path> copy_files;   // extra files copied in (e.g. metrics.jsonl)
};

void save_checkpoint(const fs::path& dir, const CheckpointContents& c);

// Loads a model from a checkpoint folder: config.json decides the architecture, the weights must
// match it name for name and shape for shape (an error names the first tensor that does not).
CausalLM load_model(const fs::path& dir);
// Loads the weights of `dir` into an existing model of the same architecture.
void load_weights(CausalLM& model, const fs::path& dir);
ModelConfig load_model_config(const fs::path& dir);
// A stitched model's trained stitches (model/stitch.h), the only weights it adds to its hub's
// and experts': written atomically; read back checked like load_weights.
void save_stitches(const StitchedLM& model, const fs::path& file);
void load_stitches(StitchedLM& model, const fs::path& file);
// state.json of a resumable checkpoint, or nullopt when the folder has none.
std::optional<TrainState> load_train_state(const fs::path& dir);
void load_optimizer(AdamW& opt, const fs::path& dir, int64_t steps);

bool is_checkpoint(const fs::path& dir);

}  // namespace btx
