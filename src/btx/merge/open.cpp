#include "btx/merge/open.h"

#include "btx/eval/ensemble.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace fs = std::filesystem;

nlohmann::json read_merge_manifest(const fs::path& dir) {
  const fs::path file = dir / "merge.json";
  if (!fs::exists(file)) return nullptr;
  try {
    return nlohmann::json::parse(read_file(file));
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: invalid JSON ({})", file.string(), e.what());
  }
}

namespace {
// The experts a description names, loaded and checked against their recorded weights.
std::pair<std::vector<std::string>, std::vector<CausalLM>> load_described_experts(
    const fs::path& dir, const nlohmann::json& manifest) {
  std::vector<std::string> names;
  std::vector<CausalLM> models;
  try {
    for (const auto& e : manifest.at("experts")) {
      const std::string name = e.at("name").get<std::string>();
      const fs::path path = dir / e.at("path").get<std::string>();
      BTX_CHECK(fs::exists(path / "model.safetensors"),
                "{}: expert '{}' is missing (looked for {})", (dir / "merge.json").string(), name,
                (path / "model.safetensors").string());
      BTX_CHECK(sha256_file(path / "model.safetensors") == e.at("sha256").get<std::string>(),
                "{}: expert '{}' ({}) changed since the merge; run `btx merge` again",
                (dir / "merge.json").string(), name, path.string());
      names.push_back(name);
      models.push_back(load_model(path));
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed merge.json ({})", (dir / "merge.json").string(), e.what());
  }
  return {names, models};
}

int64_t param_int(const nlohmann::json& params, const std::string& key) {
  return std::stoll(params.at(key).get<std::string>());
}
double param_real(const nlohmann::json& params, const std::string& key) {
  return std::stod(params.at(key).get<std::string>());
}
}  // namespace

std::unique_ptr<Scorer> open_scorer(const fs::path& dir) {
  BTX_CHECK(fs::is_directory(dir), "model folder {} does not exist", dir.string());
  const nlohmann::json manifest = read_merge_manifest(dir);
  const std::string kind =
      manifest.is_null() ? "checkpoint" : manifest.value("kind", std::string("checkpoint"));
  if (kind == "checkpoint") return std::make_unique<ModelScorer>(load_model(dir));
  try {
    const auto& params = manifest.at("params");
    auto [names, models] = load_described_experts(dir, manifest);
    if (kind == "ensemble") {
      EnsembleOptions o;
      o.prior = parse_ensemble_prior(params.at("prior").get<std::string>());
      o.top_k = param_int(params, "top-k");
      o.alpha = param_real(params, "alpha");
      o.prior_windows = param_int(params, "prior-windows");
      return std::make_unique<EnsembleScorer>(std::move(names), std::move(models), o);
    }
    if (kind == "posterior-average") {
      return std::make_unique<PosteriorAverageScorer>(std::move(names), std::move(models),
                                                      param_real(params, "alpha"),
                                                      param_int(params, "prior-windows"));
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed merge.json ({})", (dir / "merge.json").string(), e.what());
  } catch (const std::logic_error& e) {  // stoll/stod
    fail("{}: malformed parameter in merge.json ({})", (dir / "merge.json").string(), e.what());
  }
  fail("{}: unknown model kind '{}' (expected checkpoint, ensemble or posterior-average)",
       (dir / "merge.json").string(), kind);
}

}  // namespace btx
