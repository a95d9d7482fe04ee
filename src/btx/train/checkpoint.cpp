#include "btx/train/checkpoint.h"

#include "btx/io/safetensors.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

nlohmann::json TrainState::to_json() const {
  return {{"format_version", kCheckpointFormatVersion},
          {"step", step},
          {"tokens", tokens},
          {"data_seed", data_seed},
          {"done", done},
          {"extra", extra}};
}

TrainState TrainState::from_json(const nlohmann::json& j, const std::string& where) {
  try {
    const int v = j.at("format_version").get<int>();
    BTX_CHECK(v <= kCheckpointFormatVersion,
              "{}: format_version {} was written by a newer btx (this one reads up to {})", where,
              v, kCheckpointFormatVersion);
    TrainState s;
    s.step = j.at("step").get<int64_t>();
    s.tokens = j.at("tokens").get<int64_t>();
    s.data_seed = j.at("data_seed").get<uint64_t>();
    s.done = j.at("done").get<bool>();
    s.extra = j.value("extra", nlohmann::json::object());
    return s;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed train state ({})", where, e.what());
  }
}

void save_checkpoint(const fs::path& dir, const CheckpointContents& c) {
  BTX_CHECK(c.model, "save_checkpoint: no model given for {}", dir.string());
  write_dir_atomic(dir, [&](const fs::path& tmp) {
    TensorMap weights;
    for (const auto& p : (*c.model)->named_parameters()) weights[p.key()] = p.value().detach();
    save_safetensors(tmp / "model.safetensors", weights, {{"format", "pt"}});
    write_file_atomic(tmp / "config.json", model_config_to_json((*c.model)->config()).dump(2));
    if (c.optimizer) {
      save_safetensors(tmp / "optimizer.safetensors", c.optimizer->state());
    }
    if (c.state) write_file_atomic(tmp / "state.json", c.state->to_json().dump(2));
    for (const auto& f : c.copy_files) {
      if (fs::exists(f)) fs::copy_file(f, tmp / f.filename());
    }
  });
}

bool is_checkpoint(const fs::path& dir) {
  return fs::exists(dir / "model.safetensors") && fs::exists(dir / "config.json");
}

ModelConfig load_model_config(const fs::path& dir) {
  const fs::path file = dir / "config.json";
  BTX_CHECK(fs::exists(file), "{} is not a checkpoint: {} is missing", dir.string(), file.string());
  return model_config_from_json(read_json_file(file), file.string());
}

namespace {
// Reads `file` into `params`: the same names, shapes, floating types, nothing else.
void load_named(const fs::path& file,
                const torch::OrderedDict<std::string, torch::Tensor>& params) {
  const SafetensorsReader reader(file);
  // Every name, shape and dtype is checked against the model before any tensor is read: a file
  // declaring a huge or foreign tensor is refused without allocating it.
  for (const auto& p : params) {
    const auto it = reader.tensors().find(p.key());
    BTX_CHECK(it != reader.tensors().end(),
              "{}: tensor '{}' is missing (a checkpoint of a different architecture?)",
              file.string(), p.key());
    BTX_CHECK(it->second.shape == p.value().sizes().vec(),
              "{}: tensor '{}' has shape [{}], the model expects [{}] (a checkpoint of a "
              "different architecture?)",
              file.string(), p.key(), fmt::join(it->second.shape, ", "),
              fmt::join(p.value().sizes(), ", "));
    BTX_CHECK(c10::isFloatingType(it->second.scalar_type()),
              "{}: tensor '{}' is {}; model weights are floating point (F32, F16 or BF16)",
              file.string(), p.key(), it->second.dtype);
  }
  for (const auto& [name, info] : reader.tensors()) {
    BTX_CHECK(params.contains(name),
              "{}: unexpected tensor '{}' that the model does not have (a checkpoint of a "
              "different architecture?)",
              file.string(), name);
  }
  torch::NoGradGuard no_grad;
  for (const auto& p : params) p.value().copy_(reader.read(p.key()));
}
}  // namespace

void load_weights(CausalLM& model, const fs::path& dir) {
  load_named(dir / "model.safetensors", model->named_parameters());
}

void save_stitches(const StitchedLM& model, const fs::path& file) {
  TensorMap weights;
  for (const auto& [name, t] : model->stitch_parameters()) weights[name] = t.detach();
  save_safetensors(
      file, weights,
      {{"format", "pt"}, {"btx", "stitches"}, {"stitch_every", std::to_string(model->every())}});
}

void load_stitches(StitchedLM& model, const fs::path& file) {
  torch::OrderedDict<std::string, torch::Tensor> params;
  for (const auto& [name, t] : model->stitch_parameters()) params.insert(name, t);
  load_named(file, params);
}

CausalLM load_model(const fs::path& dir) {
  CausalLM model(load_model_config(dir));
  load_weights(model, dir);
  return model;
}

std::optional<TrainState> load_train_state(const fs::path& dir) {
  const fs::path file = dir / "state.json";
  if (!fs::exists(file)) return std::nullopt;
  return TrainState::from_json(read_json_file(file), file.string());
}

void load_optimizer(AdamW& opt, const fs::path& dir, int64_t steps) {
  const fs::path file = dir / "optimizer.safetensors";
  BTX_CHECK(fs::exists(file), "{} is missing: the checkpoint in {} cannot be resumed",
            file.string(), dir.string());
  opt.load_state(load_safetensors(file).tensors, steps, file.string());
}

}  // namespace btx
