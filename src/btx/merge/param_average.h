// Weighted parameter averaging of checkpoints (BTM's "merge": Li et al. 2022, arXiv:2208.03306,
// and Model Soups, Wortsman et al. 2022, arXiv:2203.05482): every tensor becomes
// Σ_i w_i θ_i / Σ_i w_i. It streams: one output tensor at a time is built from slices read from
// each input, accumulated in float64, cast back and written, so peak memory is about one tensor
// plus a few MB, whatever the number of inputs, not N checkpoints. It does not align or permute
// weights (the inputs must share one initialisation).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "btx/io/safetensors.h"
#include "btx/model/config.h"

namespace btx {

namespace fs = std::filesystem;

struct WeightedCheckpoint {
  fs::path dir;  // a checkpoint folder: model.safetensors + config.json
  double weight = 1.0;
};

struct AverageStats {
  int64_t tensors = 0;  // tensors written
  int64_t bytes = 0;    // tensor bytes written
};

// Σ_i w_i θ_i / Σ_i w_i of every tensor of the checkpoints, written as out_dir/model.safetensors
// and out_dir/config.json (the inputs' config). Weights must be finite and >= 0, not all zero;
// a zero-weight input is checked but not read. Every input must have the same config and the
// same tensors (names, shapes, floating dtypes); all of this is checked before anything is
// written, and a bad input is a btx::Error naming the folder, tensor or value at fault. A tensor
// whose bytes are the same in every contributing input is copied as is, so averaging identical
// checkpoints gives them back bit for bit, whatever the weights.
AverageStats average_checkpoints(const std::vector<WeightedCheckpoint>& inputs,
                                 const fs::path& out_dir);

// The same inputs, opened and checked as above, for a caller that writes its own layout (the
// MoE of `btx merge --method btx` averages every tensor but the FFNs, which it keeps apart).
// `what` names the result in error messages.
class CheckpointAverager {
 public:
  CheckpointAverager(const std::vector<WeightedCheckpoint>& inputs, const std::string& what);
  ~CheckpointAverager();
  const ModelConfig& config() const;
  const TensorLayout& layout() const;  // the inputs' common tensors
  size_t size() const;                 // number of inputs
  // The weighted average of one tensor, streamed as in average_checkpoints.
  torch::Tensor average(const std::string& name) const;
  // One input's tensor as it is.
  torch::Tensor read(size_t input, const std::string& name) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace btx
