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
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(file));
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: invalid JSON ({})", file.string(), e.what());
  }
  return model_config_from_json(j, file.string());
}

void load_weights(CausalLM& model, const fs::path& dir) {
  const fs::path file = dir / "model.safetensors";
  auto loaded = load_safetensors(file).tensors;
  torch::NoGradGuard no_grad;
  auto params = model->named_parameters();
  for (const auto& p : params) {
    auto it = loaded.find(p.key());
    BTX_CHECK(it != loaded.end(),
              "{}: tensor '{}' is missing (a checkpoint of a different "
              "architecture?)",
              file.string(), p.key());
    BTX_CHECK(it->second.sizes() == p.value().sizes(),
              "{}: tensor '{}' has shape [{}], the model expects [{}] (a checkpoint of a "
              "different architecture?)",
              file.string(), p.key(), fmt::join(it->second.sizes(), ", "),
              fmt::join(p.value().sizes(), ", "));
    p.value().copy_(it->second);
    loaded.erase(it);
  }
  BTX_CHECK(loaded.empty(),
            "{}: unexpected tensor '{}' that the model does not have (a checkpoint "
            "of a different architecture?)",
            file.string(), loaded.begin()->first);
}

CausalLM load_model(const fs::path& dir) {
  CausalLM model(load_model_config(dir));
  load_weights(model, dir);
  return model;
}

std::optional<TrainState> load_train_state(const fs::path& dir) {
  const fs::path file = dir / "state.json";
  if (!fs::exists(file)) return std::nullopt;
  try {
    return TrainState::from_json(nlohmann::json::parse(read_file(file)), file.string());
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: invalid JSON ({})", file.string(), e.what());
  }
}

void load_optimizer(AdamW& opt, const fs::path& dir, int64_t steps) {
  const fs::path file = dir / "optimizer.safetensors";
  BTX_CHECK(fs::exists(file), "{} is missing: the checkpoint in {} cannot be resumed",
            file.string(), dir.string());
  opt.load_state(load_safetensors(file).tensors, steps, file.string());
}

}  // namespace btx
