// The merge registry (the explicit list of methods) and what every merge shares: parameter
// validation, the experts' checks, provenance in merge.json, and skipping up-to-date merges.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "btx/merge/method.h"
#include "btx/run/experts.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

const std::vector<MergeMethod>& merge_methods() {
  static const std::vector<MergeMethod> methods = {
      average_method(),  weighted_average_method(),
      fisher_method(),   ensemble_method(),
      dense_method(),    btx_method(),
      upcycle_method(),  tag_method(),
      hash_method(),     smear_method(),
      flexolmo_method(), bam_method(),
      symphony_method(), bts_method(),
  };
  return methods;
}

const MergeMethod& find_merge_method(const std::string& name) {
  std::vector<std::string> names;
  for (const auto& m : merge_methods()) {
    if (m.name == name) return m;
    names.push_back(m.name);
  }
  fail("unknown merge method '{}' (the methods: {})", name, fmt::join(names, ", "));
}

std::vector<DynamicOption> merge_param_options() {
  std::vector<DynamicOption> out;
  std::map<std::string, std::vector<std::string>> users;
  std::map<std::string, std::string> help;
  for (const auto& m : merge_methods()) {
    for (const auto& p : m.params) {
      users[p.name].push_back(m.name);
      help.emplace(p.name, p.help);  // the first method's
    }
  }
  for (const auto& [name, methods] : users) {
    out.push_back({name, fmt::format("{} [{}]", help.at(name), fmt::join(methods, ", "))});
  }
  return out;
}

fs::path merged_dir(const RunDir& run, const std::string& name) {
  return run.root / "merged" / name;
}

// ---- MergeContext ---------------------------------------------------------------------------

std::vector<WeightedCheckpoint> MergeContext::uniform_inputs() const {
  std::vector<WeightedCheckpoint> out;
  for (const auto& e : experts) out.push_back({e.dir, 1.0});
  return out;
}

std::vector<std::string> MergeContext::expert_names() const {
  std::vector<std::string> out;
  for (const auto& e : experts) out.push_back(e.name);
  return out;
}

// ---- experts --------------------------------------------------------------------------------

std::vector<MergeExpert> trained_experts(const RunDir& run) {
  const auto specs = list_experts(run);
  BTX_CHECK(!specs.empty(), "{} has no experts (`btx branch --run {}` creates them)",
            run.root.string(), run.root.string());
  std::vector<MergeExpert> out;
  std::string seed_sha, seed_of;
  for (const auto& spec : specs) {
    const fs::path dir = expert_dir(run, spec.name);
    const auto state = load_train_state(dir);
    BTX_CHECK(state && state->done,
              "expert '{}' has not finished training ({}): merging needs every expert trained "
              "(`btx train --run {} --expert {}`)",
              spec.name, state ? fmt::format("at step {}", state->step) : "not started",
              run.root.string(), spec.name);
    const auto init = read_json_file(dir / "expert.json").value("init", nlohmann::json::object());
    const std::string sha = init.value("seed_sha256", "");
    if (!sha.empty()) {
      if (seed_sha.empty()) {
        seed_sha = sha;
        seed_of = spec.name;
      }
      BTX_CHECK(sha == seed_sha,
                "experts '{}' and '{}' were branched from different seeds (seed sha256 {}... vs "
                "{}...): averaging or mixing them is meaningless",
                seed_of, spec.name, seed_sha.substr(0, 12), sha.substr(0, 12));
    }
    if (!out.empty()) {
      const std::string diff =
          model_config_difference(load_model_config(out.front().dir), load_model_config(dir));
      BTX_CHECK(diff.empty(), "experts '{}' and '{}' have different architectures ({})",
                out.front().name, spec.name, diff);
    }
    out.push_back({spec.name, dir, "", state->tokens, sha});
  }
  return out;
}

// ---- run_merge ------------------------------------------------------------------------------

std::string merge_output_name(const MergeRequest& request) {
  const std::string name =
      request.output_name.empty() ? find_merge_method(request.method).name : request.output_name;
  BTX_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
            "--name '{}' must be a plain folder name", name);
  return name;
}

ParamValues resolve_merge_params(const MergeMethod& method,
                                 const std::map<std::string, std::string>& given) {
  // Only the method's own parameters, each checked against its choices; defaults filled in.
  std::vector<std::string> own;
  for (const auto& p : method.params) own.push_back("--" + p.name);
  for (const auto& [name, value] : given) {
    const bool known = std::any_of(method.params.begin(), method.params.end(),
                                   [&](const Param& p) { return p.name == name; });
    BTX_CHECK(known, "--{} does not apply to method '{}' (its parameters: {})", name, method.name,
              own.empty() ? std::string("none") : fmt::format("{}", fmt::join(own, ", ")));
  }
  ParamValues out = ParamValues::resolve(method.params, given);
  if (method.check_params) method.check_params(out);
  return out;
}

void check_merge_expert_mode(const MergeMethod& method, ExpertMode mode, const std::string& where) {
  const auto& modes = method.expert_modes;
  BTX_CHECK(std::find(modes.begin(), modes.end(), mode) != modes.end(),
            "{} merges experts trained in mode {}, not '{}' ({})", method.name,
            name_list(modes, " or "), name_of(mode), where);
}

nlohmann::json run_merge(const Run& run, const MergeRequest& request) {
  const MergeMethod& method = find_merge_method(request.method);
  MergeContext ctx{run};
  ctx.resume = request.resume;
  ctx.output_name = merge_output_name(request);
  ctx.params = resolve_merge_params(method, request.params);
  tidy_run(run);  // merge owns the run: a crash's leftovers are tidied before the experts are read
  ctx.experts = trained_experts(run);
  for (const auto& e : ctx.experts) {
    check_merge_expert_mode(method, find_expert(run, e.name).mode, "expert '" + e.name + "'");
  }
  if (method.experts) ctx.experts = method.experts(run, ctx.params, std::move(ctx.experts));
  for (auto& e : ctx.experts) e.sha256 = sha256_file(e.dir / "model.safetensors");

  nlohmann::json provenance = {{"method", method.name}, {"params", ctx.params.to_json()}};
  nlohmann::json experts = nlohmann::json::array();
  for (const auto& e : ctx.experts) {
    experts.push_back({{"name", e.name},
                       {"path", fs::relative(e.dir, merged_dir(run, ctx.output_name)).string()},
                       {"sha256", e.sha256},
                       {"tokens", e.tokens}});
  }
  provenance["experts"] = experts;

  const fs::path out = merged_dir(run, ctx.output_name);
  const fs::path manifest = out / "merge.json";
  tidy_dir(out);
  if (fs::exists(manifest) && !request.force) {
    const auto have = read_json_file(manifest);
    // A parameter declared since the merge was made counts as its default (what it did then).
    nlohmann::json had = have.value("params", nlohmann::json::object());
    for (const auto& p : method.params) {
      if (had.is_object() && !had.contains(p.name)) had[p.name] = p.default_value;
    }
    const bool same = have.value("method", "") == provenance["method"] &&
                      had == provenance["params"] &&
                      have.value("experts", nlohmann::json()) == provenance["experts"];
    BTX_CHECK(same,
              "{} was made with a different method, parameters or experts; pass --force to "
              "rebuild it, or --name to keep both",
              out.string());
    spdlog::info("merge '{}': {} is up to date", ctx.output_name, out.string());
    return have;
  }

  auto finish = [&](const nlohmann::json& result, const fs::path& dir) {
    nlohmann::json j = provenance;
    j["format_version"] = 2;  // 2: from_experts
    j["from_experts"] = method.from_experts;
    j["name"] = ctx.output_name;
    j["description"] = method.description;
    j["paper"] = method.paper;
    j["kind"] = result.value("kind", "checkpoint");
    j["result"] = result;
    write_file_atomic(dir / "merge.json", j.dump(2));
    return j;
  };
  spdlog::info("merge '{}': {} of {} experts into {}", ctx.output_name, method.name,
               ctx.experts.size(), out.string());
  nlohmann::json written;
  if (method.trains) {
    // A trained merge builds in place (its checkpoints make it resumable). --force moves the old
    // model aside first and puts it back when the rebuild fails; a crash mid-rebuild leaves the
    // rebuild to resume (and the old model to tidy_dir).
    fs::path aside;
    if (request.force && fs::exists(out)) {
      // Not "<out>.old.tmp-*": the trainer would take that for a swap to complete.
      aside = temp_sibling(out.string() + ".replaced");
      fs::rename(out, aside);
    }
    try {
      written = finish(method.build(ctx, out), out);
    } catch (...) {
      if (!aside.empty()) {
        std::error_code ec;
        fs::remove_all(out, ec);
        fs::rename(aside, out, ec);
        if (!ec)
          spdlog::warn("merge '{}' failed: the previous {} is kept", ctx.output_name, out.string());
      }
      throw;
    }
    if (!aside.empty()) fs::remove_all(aside);
  } else {
    write_dir_atomic(out,
                     [&](const fs::path& tmp) { written = finish(method.build(ctx, tmp), tmp); });
  }
  return written;
}

}  // namespace btx
