#include "btx/merge/finetune.h"

#include "btx/data/shards.h"
#include "btx/model/moe.h"
#include "btx/model/param_roles.h"
#include "btx/run/model_folder.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"

namespace btx {

const std::vector<std::string>& finetune_selections() {
  static const std::vector<std::string> names = {"all", "router", "router+shared"};
  return names;
}

std::string finetune_selections_help() {
  std::vector<std::string> parts;
  for (const auto& name : finetune_selections()) {
    const auto& s = param_selection(name, finetune_selections(), "--train");
    parts.push_back(fmt::format("{} ({})", s.name, s.summary));
  }
  return fmt::format("{}", fmt::join(parts, " | "));
}

TrainResult finetune_model(const Run& run, const fs::path& model_dir, const std::string& train_what,
                           bool resume, int64_t stop_after, const fs::path& data) {
  const RunConfig& c = run.config();
  const ParamSelection& selection = param_selection(train_what, finetune_selections(), "--train");
  BTX_CHECK(fs::exists(model_dir / "config.json"), "{} is not a model folder (no config.json)",
            model_dir.string());
  const ModelConfig mc = load_model_config(model_dir);
  BTX_CHECK(mc.is_routed(),
            "{} is not an MoE or SMEAR model (model_type \"{}\"): finetune trains the routers "
            "and experts of `btx merge --method btx`, `upcycle` or `smear` models",
            model_dir.string(), name_of(mc.model_type));
  BTX_CHECK(c.finetune.seq_len <= mc.max_sequence(),
            "[finetune] seq_len {} exceeds the model's longest sequence {}", c.finetune.seq_len,
            mc.max_sequence());
  const std::string name = model_dir.filename().string();
  TrainJob job = run_train_job(run, name, model_dir, c.finetune, "finetune/" + name);
  job.init_from = model_dir;  // the merge, until the first checkpoint replaces it
  job.model = mc;
  job.train.domain_weights.clear();  // the balanced mixture
  job.resume = resume;
  job.stop_after = stop_after;
  job.keep_files = {"merge.json"};
  if (!data.empty()) {
    BTX_CHECK(fs::exists(data / "manifest.json"),
              "--data {}: not a data folder of token shards (no manifest.json; `btx prepare` "
              "makes one)",
              data.string());
    job.data_dir = data;
  }
  if (!selection.all()) {
    job.trainable = [selection](const std::string& name) { return selection.trains(name); };
  }
  if (mc.router().needs_labels) {  // each row to its domain's expert
    const auto routes = ModelFolder::open(model_dir).domain_experts();
    job.before_forward = [routes, model_dir](CausalLM& m, const std::vector<std::string>& rows) {
      std::vector<int64_t> ids;
      for (const auto& d : rows) {
        auto it = routes.find(d);
        BTX_CHECK(it != routes.end(), "{}: tag routing has no expert for domain '{}'",
                  model_dir.string(), d);
        ids.push_back(it->second);
      }
      force_experts(m, torch::tensor(ids));
    };
  }
  return train(job);
}

}  // namespace btx
