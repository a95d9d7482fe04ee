#include "btx/merge/grow.h"

#include <spdlog/spdlog.h>

#include "btx/data/shards.h"
#include "btx/merge/param_average.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

ExpertSpec grow_expert(const Run& run, const std::string& name,
                       const std::map<std::string, double>& domains) {
  const RunConfig& c = run.config();
  require_finished_seed(run);
  const ShardSet& data = run.shards();
  check_domains(domains, data.domains(), name);
  BTX_CHECK(!fs::exists(expert_dir(run, name)), "expert '{}' already exists in {}", name,
            experts_dir(run).string());
  std::vector<std::string> trained;
  for (const auto& e : list_experts(run)) {
    auto s = load_train_state(expert_dir(run, e.name));
    if (s && s->done) trained.push_back(e.name);
  }
  ExpertSpec spec{name, domains, {}, c.experts.mode};
  nlohmann::json init;
  std::vector<WeightedCheckpoint> weights;
  if (trained.empty()) {
    weights.push_back({run.seed(), 1.0});
    init = {{"from", "seed"}, {"seed_sha256", sha256_file(run.seed() / "model.safetensors")}};
  } else {
    std::vector<std::string> names;
    for (const auto& [d, w] : domains) {
      if (w > 0) names.push_back(d);
    }
    const auto post = expert_posterior(run, trained, names);
    for (const auto& [e, w] : post) weights.push_back({expert_dir(run, e), w});
    init = {{"from", "posterior-weighted average"},
            {"posterior", post},
            {"seed_sha256", sha256_file(run.seed() / "model.safetensors")}};
  }
  write_dir_atomic(expert_dir(run, name), [&](const fs::path& tmp) {
    average_checkpoints(weights, tmp);
    auto j = spec.to_json();
    j["init"] = init;
    write_file_atomic(tmp / "expert.json", j.dump(2));
  });
  spdlog::info("added expert '{}' ({})", name, init.dump());
  return spec;
}

}  // namespace btx
