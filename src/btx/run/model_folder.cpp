#include "btx/run/model_folder.h"

#include <optional>

#include "btx/model/router.h"
#include "btx/run/run_dir.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

const std::vector<Named<ModelKind>>& names(ModelKind) {
  static const std::vector<Named<ModelKind>> table = {
      {ModelKind::kCheckpoint, "checkpoint"},
      {ModelKind::kEnsemble, "ensemble"},
      {ModelKind::kPosteriorAverage, "posterior-average"},
      {ModelKind::kStitched, "stitched"},
  };
  return table;
}

MergeRecord MergeRecord::read(const fs::path& file) {
  const nlohmann::json j = read_json_file(file);
  MergeRecord r;
  try {
    r.method = j.value("method", "");
    const std::string kind = j.value("kind", std::string("checkpoint"));
    const auto k = find_named<ModelKind>(kind);
    BTX_CHECK(k.has_value(), "{}: unknown model kind '{}' (expected {})", file.string(), kind,
              name_alternatives<ModelKind>());
    r.kind = *k;
    r.params = j.value("params", std::map<std::string, std::string>{});
    for (const auto& e : j.value("experts", nlohmann::json::array())) {
      r.experts.push_back({e.at("name").get<std::string>(),
                           file.parent_path() / e.at("path").get<std::string>(),
                           e.at("sha256").get<std::string>(), e.value("tokens", int64_t{0})});
    }
    r.result = j.value("result", nlohmann::json::object());
    for (const auto& s : r.result.value("moe_experts", nlohmann::json::array())) {
      r.slots.push_back({s.value("name", ""), s.value("domains", std::vector<std::string>{})});
    }
    // Since format_version 2 the merge records it; before, only sparse upcycling and the dense
    // baseline did not build on the experts' weights.
    r.from_experts = j.contains("from_experts") ? j.at("from_experts").get<bool>()
                                                : r.method != "upcycle" && r.method != "dense";
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed merge.json ({})", file.string(), e.what());
  }
  return r;
}

struct ModelFolder::State {
  fs::path path;
  std::optional<MergeRecord> merge;
  EnsembleOptions ensemble;  // kEnsemble, kPosteriorAverage
  std::optional<ModelConfig> config;
  CausalLM model{nullptr};
  std::vector<CausalLM> experts;
  bool experts_loaded = false;
  StitchedLM stitched{nullptr};
};

namespace {
// The recorded parameters that `declared` names, checked and typed by those declarations.
ParamValues recorded_params(const MergeRecord& r, const std::vector<Param>& declared,
                            const fs::path& file) {
  // A parameter the record lacks was declared after the merge was made: it takes its default,
  // which is what merges did before it existed. A record with none of them is malformed.
  std::map<std::string, std::string> given;
  for (const auto& p : declared) {
    auto it = r.params.find(p.name);
    if (it != r.params.end()) given[p.name] = it->second;
  }
  BTX_CHECK(!given.empty() || declared.empty(), "{}: malformed merge.json (no parameter '{}')",
            file.string(), declared.front().name);
  try {
    return ParamValues::resolve(declared, given);
  } catch (const Error& e) {
    fail("{}: malformed parameter in merge.json ({})", file.string(), e.what());
  }
}
}  // namespace

ModelFolder ModelFolder::open(const fs::path& dir) {
  BTX_CHECK(fs::is_directory(dir), "model folder {} does not exist", dir.string());
  ModelFolder f;
  f.s_ = std::make_shared<State>();
  f.s_->path = dir;
  const fs::path file = dir / "merge.json";
  if (fs::exists(file)) {
    f.s_->merge = MergeRecord::read(file);
    if (f.s_->merge->kind == ModelKind::kEnsemble) {
      f.s_->ensemble =
          btx::ensemble_options(recorded_params(*f.s_->merge, ensemble_params(), file));
    } else if (f.s_->merge->kind == ModelKind::kPosteriorAverage) {
      const auto p = recorded_params(*f.s_->merge, posterior_params(), file);
      f.s_->ensemble.alpha = p.real("alpha");
      f.s_->ensemble.prior_windows = p.integer("prior-windows");
    }
  }
  return f;
}

const fs::path& ModelFolder::path() const {
  return s_->path;
}

ModelKind ModelFolder::kind() const {
  return s_->merge ? s_->merge->kind : ModelKind::kCheckpoint;
}

bool ModelFolder::merged() const {
  return s_->merge.has_value();
}

const MergeRecord& ModelFolder::merge() const {
  BTX_CHECK(s_->merge.has_value(), "{} is not a merged model (it has no merge.json)",
            s_->path.string());
  return *s_->merge;
}

const std::string& ModelFolder::method() const {
  static const std::string none;
  return s_->merge ? s_->merge->method : none;
}

const ModelConfig& ModelFolder::config() const {
  if (!s_->config) s_->config = load_model_config(s_->path);
  return *s_->config;
}

CausalLM ModelFolder::model() const {
  if (!s_->model) {
    CausalLM m(config());
    load_weights(m, s_->path);
    s_->model = m;
  }
  return s_->model;
}

const std::vector<CausalLM>& ModelFolder::experts() const {
  if (s_->experts_loaded) return s_->experts;
  const fs::path file = s_->path / "merge.json";
  std::vector<CausalLM> loaded;  // kept only when every expert loads
  for (const auto& e : merge().experts) {
    BTX_CHECK(fs::exists(e.dir / "model.safetensors"), "{}: expert '{}' is missing (looked for {})",
              file.string(), e.name, (e.dir / "model.safetensors").string());
    BTX_CHECK(sha256_file(e.dir / "model.safetensors") == e.sha256,
              "{}: expert '{}' ({}) changed since the merge; run `btx merge` again", file.string(),
              e.name, e.dir.string());
    loaded.push_back(load_model(e.dir));
  }
  s_->experts = std::move(loaded);
  s_->experts_loaded = true;
  return s_->experts;
}

StitchedLM ModelFolder::stitched() const {
  if (s_->stitched) return s_->stitched;
  const fs::path file = s_->path / "merge.json";
  BTX_CHECK(kind() == ModelKind::kStitched, "{} is not a stitched model (merge.json kind '{}')",
            s_->path.string(), name_of(kind()));
  fs::path hub_dir;
  std::string hub_sha;
  int64_t every = 0;
  try {
    const auto& hub = merge().result.at("hub");
    hub_dir = s_->path / hub.at("path").get<std::string>();
    hub_sha = hub.at("sha256").get<std::string>();
    every = merge().result.at("stitch_every").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed merge.json for a stitched model ({})", file.string(), e.what());
  }
  BTX_CHECK(every >= 1, "{}: stitch_every {} (expected at least 1)", file.string(), every);
  BTX_CHECK(fs::exists(hub_dir / "model.safetensors"), "{}: its hub is missing (looked for {})",
            file.string(), (hub_dir / "model.safetensors").string());
  BTX_CHECK(sha256_file(hub_dir / "model.safetensors") == hub_sha,
            "{}: its hub ({}) changed since the merge; run `btx merge` again", file.string(),
            hub_dir.string());
  StitchedLM m(load_model(hub_dir), experts(), every);
  load_stitches(m, s_->path / "stitches.safetensors");
  s_->stitched = m;
  return m;
}

std::vector<std::string> ModelFolder::expert_names() const {
  std::vector<std::string> out;
  if (s_->merge) {
    for (const auto& e : s_->merge->experts) out.push_back(e.name);
  }
  return out;
}

const EnsembleOptions& ModelFolder::ensemble_options() const {
  BTX_CHECK(kind() == ModelKind::kEnsemble || kind() == ModelKind::kPosteriorAverage,
            "{} is not an ensemble (merge.json kind '{}')", s_->path.string(), name_of(kind()));
  return s_->ensemble;
}

ModelFacts ModelFolder::facts() const {
  ModelFacts f;
  f.kind = kind();
  if (s_->merge) {
    f.method = s_->merge->method;
    f.params = s_->merge->params;
    f.from_experts = s_->merge->from_experts;
  }
  if (f.kind == ModelKind::kEnsemble) {
    f.ensemble = true;
    f.ensemble_top_k = s_->ensemble.top_k;
  }
  if (f.kind == ModelKind::kCheckpoint) {
    const ModelConfig& c = config();
    f.routed = c.is_routed();
    f.learned = f.routed && c.router().learned;
    f.causal = c.is_causal();
  }
  return f;
}

const std::vector<ExpertSlot>& ModelFolder::slots() const {
  static const std::vector<ExpertSlot> none;
  return s_->merge ? s_->merge->slots : none;
}

std::map<std::string, int64_t> ModelFolder::domain_experts() const {
  std::map<std::string, int64_t> out;
  const auto& all = slots();
  for (size_t j = 0; j < all.size(); ++j) {
    for (const auto& d : all[j].domains) out.emplace(d, static_cast<int64_t>(j));
  }
  return out;
}

fs::path find_run_tokenizer(const fs::path& model_dir) {
  fs::path dir = fs::absolute(model_dir).lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();
  for (int up = 0; up < 3; ++up) {
    const fs::path tok = run_tokenizer_in(dir);
    if (fs::exists(tok)) return tok;
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
            "no tokenizer.json or tokenizer.model for {} (looked in it and the two folders above "
            "it); pass "
            "--tokenizer FILE",
            model_dir.string());
  return found;
}

}  // namespace btx
