#include "btx/run/open.h"

#include <limits>

#include "btx/eval/ensemble.h"
#include "btx/model/moe.h"
#include "btx/model/router.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace fs = std::filesystem;

nlohmann::json read_merge_manifest(const fs::path& dir) {
  const fs::path file = dir / "merge.json";
  if (!fs::exists(file)) return nullptr;
  return read_json_file(file);
}

ModelFacts model_facts(const fs::path& dir) {
  ModelFacts f;
  const nlohmann::json manifest = read_merge_manifest(dir);
  if (!manifest.is_null()) {
    f.method = manifest.value("method", "");
    f.params = manifest.value("params", nlohmann::json::object());
    f.kind = manifest.value("kind", std::string("checkpoint"));
    // Since format_version 2 the merge records it; before, only sparse upcycling and the dense
    // baseline did not build on the experts' weights.
    f.from_experts = manifest.contains("from_experts")
                         ? manifest.at("from_experts").get<bool>()
                         : f.method != "upcycle" && f.method != "dense";
  } else {
    f.kind = "checkpoint";
  }
  if (f.kind == "ensemble") {
    f.ensemble = true;
    f.ensemble_top_k = described_ensemble_options(dir, manifest).top_k;
  }
  if (f.kind == "checkpoint") {
    const ModelConfig c = load_model_config(dir);
    f.routed = c.is_routed();
    f.learned = f.routed && c.router().learned;
    f.causal = c.is_causal();
  }
  return f;
}

std::map<std::string, int64_t> domain_experts(const nlohmann::json& manifest) {
  std::map<std::string, int64_t> out;
  if (manifest.is_null() || !manifest.contains("result")) return out;
  const auto& slots = manifest["result"].value("moe_experts", nlohmann::json::array());
  for (size_t j = 0; j < slots.size(); ++j) {
    for (const auto& d : slots[j].value("domains", std::vector<std::string>{})) {
      out.emplace(d, static_cast<int64_t>(j));
    }
  }
  return out;
}

namespace {
// Tag routing at evaluation: each domain's text goes to the expert trained on it; a domain no
// expert trained on goes to the expert with the lowest loss on its held-out text.
class TagScorer : public ModelScorer {
 public:
  TagScorer(CausalLM model, std::map<std::string, int64_t> routes, std::vector<std::string> names)
      : ModelScorer(std::move(model)), routes_(std::move(routes)), names_(std::move(names)) {}
  torch::Tensor token_nll(const torch::Tensor& tokens) override {
    BTX_CHECK(chosen_ >= 0, "tag routing: no domain set before scoring");
    return ModelScorer::token_nll(tokens);
  }
  void begin_domain(const std::string& domain, const Heldout& heldout) override {
    torch::NoGradGuard no_grad;
    auto it = routes_.find(domain);
    if (it != routes_.end()) {
      chosen_ = it->second;
      by_ = "label";
    } else {
      auto windows = heldout(16);
      BTX_CHECK(windows.size(0) >= 1,
                "tag routing: domain '{}' has no expert and no held-out text to pick one by",
                domain);
      double best = std::numeric_limits<double>::infinity();
      for (int64_t e = 0; e < model()->config().num_local_experts; ++e) {
        force_experts(model(), torch::tensor({e}));
        const double loss = ModelScorer::token_nll(windows).mean().item<double>();
        if (loss < best) {
          best = loss;
          chosen_ = e;
        }
      }
      by_ = "held-out loss";
    }
    force_experts(model(), torch::tensor({chosen_}));
  }
  nlohmann::json domain_info() const override {
    if (chosen_ < 0) return nullptr;
    const auto i = static_cast<size_t>(chosen_);
    return {{"expert", i < names_.size() ? names_[i] : std::to_string(chosen_)},
            {"chosen_by", by_}};
  }

 private:
  std::map<std::string, int64_t> routes_;
  std::vector<std::string> names_;
  int64_t chosen_ = -1;
  std::string by_;
};

int64_t param_int(const nlohmann::json& params, const std::string& key) {
  return std::stoll(params.at(key).get<std::string>());
}
double param_real(const nlohmann::json& params, const std::string& key) {
  return std::stod(params.at(key).get<std::string>());
}
}  // namespace

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

EnsembleOptions described_ensemble_options(const fs::path& dir, const nlohmann::json& manifest) {
  try {
    const auto& params = manifest.at("params");
    EnsembleOptions o;
    o.prior = parse_ensemble_prior(params.at("prior").get<std::string>());
    o.top_k = param_int(params, "top-k");
    o.alpha = param_real(params, "alpha");
    o.prior_windows = param_int(params, "prior-windows");
    return o;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed merge.json ({})", (dir / "merge.json").string(), e.what());
  } catch (const std::logic_error& e) {  // stoll/stod
    fail("{}: malformed parameter in merge.json ({})", (dir / "merge.json").string(), e.what());
  }
}

std::unique_ptr<Scorer> open_scorer(const fs::path& dir) {
  BTX_CHECK(fs::is_directory(dir), "model folder {} does not exist", dir.string());
  const nlohmann::json manifest = read_merge_manifest(dir);
  const std::string kind =
      manifest.is_null() ? "checkpoint" : manifest.value("kind", std::string("checkpoint"));
  if (kind == "checkpoint") {
    CausalLM model = load_model(dir);
    if (model->config().is_routed() && model->config().router().needs_labels) {
      std::vector<std::string> names;
      for (const auto& e : manifest.value("result", nlohmann::json::object())
                               .value("moe_experts", nlohmann::json::array())) {
        names.push_back(e.value("name", ""));
      }
      return std::make_unique<TagScorer>(model, domain_experts(manifest), names);
    }
    return std::make_unique<ModelScorer>(model);
  }
  try {
    const auto& params = manifest.at("params");
    auto [names, models] = load_described_experts(dir, manifest);
    if (kind == "ensemble") {
      return std::make_unique<EnsembleScorer>(std::move(names), std::move(models),
                                              described_ensemble_options(dir, manifest));
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

fs::path find_run_tokenizer(const fs::path& model_dir) {
  fs::path dir = fs::absolute(model_dir).lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();
  for (int up = 0; up < 3; ++up) {
    if (fs::exists(dir / "tokenizer.model")) return dir / "tokenizer.model";
    dir = dir.parent_path();
  }
  return {};
}

fs::path model_tokenizer(const fs::path& model_dir, const fs::path& given) {
  if (!given.empty()) {
    BTX_CHECK(fs::exists(given), "tokenizer {} does not exist", given.string());
    return given;
  }
  const fs::path found = find_run_tokenizer(model_dir);
  BTX_CHECK(!found.empty(),
            "no tokenizer.model for {} (looked in it and the two folders above it); pass "
            "--tokenizer FILE",
            model_dir.string());
  return found;
}

}  // namespace btx
