// Stage manifests: stages/<name>.json records a finished stage's input digest and the sha256
// of every output file, so that a later run can skip it, or say why it runs it again (study.h).
#include <algorithm>

#include "btx/study/study.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

// An output's path: relative to the run unless absolute.
fs::path resolve_output(const RunDir& run, const fs::path& output) {
  return output.is_absolute() ? output : run.root / output;
}

// Every file under an output (a file itself, or a folder's files), logs and locks aside,
// relative to the run (or absolute when outside it), sorted.
std::vector<std::string> output_files(const RunDir& run, const fs::path& output) {
  const fs::path full = resolve_output(run, output);
  std::vector<std::string> out;
  auto name_of = [&](const fs::path& p) {
    return output.is_absolute() ? p.string() : fs::relative(p, run.root).string();
  };
  if (fs::is_regular_file(full)) {
    out.push_back(name_of(full));
  } else if (fs::is_directory(full)) {
    for (const auto& f : fs::recursive_directory_iterator(full)) {
      if (!f.is_regular_file() || fs::is_symlink(f.path())) continue;
      const std::string ext = f.path().extension().string();
      if (ext == ".log" || ext == ".lock" ||
          f.path().filename().string().find(".tmp") != std::string::npos)
        continue;
      out.push_back(name_of(f.path()));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string digest_of(const nlohmann::json& j) {
  return sha256_hex(j.dump());
}

}  // namespace

// ---- stage manifests ------------------------------------------------------------------------

fs::path stage_manifest_path(const RunDir& run, const std::string& stage) {
  return run.root / "stages" / (stage + ".json");
}

std::string recorded_output_digest(const RunDir& run, const std::string& stage) {
  const fs::path p = stage_manifest_path(run, stage);
  if (!fs::exists(p)) return "";
  try {
    return read_json_file(p).value("outputs_digest", "");
  } catch (const Error&) {
    return "";
  }
}

StageState check_stage(const Run& run, const Stage& s,
                       const std::map<std::string, std::string>& output_digests) {
  const RunConfig& c = run.config();
  // The inputs: the commands, the config values the stage reads, the outputs it reads.
  nlohmann::json inputs = {{"commands", s.commands}};
  if (s.version != 0) inputs["version"] = s.version;
  const auto keys = run_config_keys(c);
  for (const auto& [k, v] : keys) {
    for (const auto& prefix : s.config_keys) {
      if (k.rfind(prefix, 0) == 0) inputs["config"][k] = v;
    }
  }
  for (const auto& a : s.after) {
    auto it = output_digests.find(a);
    inputs["after"][a] = it == output_digests.end() ? "" : it->second;
  }
  StageState st;
  st.input_values = inputs;
  const fs::path manifest_file = stage_manifest_path(run, s.name);
  if (!fs::exists(manifest_file)) {
    bool any = false;
    for (const auto& o : s.outputs) any = any || !output_files(run, o).empty();
    st.untouched = !any;
    st.reason = any ? "interrupted or made outside `btx run`: continuing" : "not run yet";
    return st;
  }
  nlohmann::json manifest;
  try {
    manifest = read_json_file(manifest_file);
  } catch (const Error& e) {
    st.clean = true;
    st.reason = fmt::format("its manifest {} is unreadable ({})", manifest_file.string(), e.what());
    return st;
  }
  if (manifest.value("inputs", "") != digest_of(inputs)) {
    st.clean = true;
    std::vector<std::string> changed;
    const auto old = manifest.value("input_values", nlohmann::json::object());
    for (const auto& a : s.after) {
      if (old.contains("after") && old["after"].value(a, "") != inputs["after"][a])
        changed.push_back(a);
    }
    if (old.value("commands", nlohmann::json()) != inputs["commands"])
      changed.push_back("commands");
    if (old.value("version", 0) != inputs.value("version", 0))
      changed.push_back(fmt::format("what it makes: version {}", inputs.value("version", 0)));
    if (old.value("config", nlohmann::json::object()) !=
        inputs.value("config", nlohmann::json::object()))
      changed.push_back("config");
    st.reason = fmt::format(
        "its inputs changed ({})",
        changed.empty() ? std::string("?") : fmt::format("{}", fmt::join(changed, ", ")));
    return st;
  }
  const auto recorded = manifest.value("outputs", nlohmann::json::object());
  for (const auto& [file, sha] : recorded.items()) {
    const fs::path p = resolve_output(run, file);
    if (!fs::exists(p)) {
      st.clean = true;
      st.reason = fmt::format("output {} is missing", file);
      return st;
    }
    if (sha256_file(p) != sha.get<std::string>()) {
      st.clean = true;
      st.reason =
          fmt::format("output {} is corrupt (its checksum differs from the manifest's)", file);
      return st;
    }
  }
  for (const auto& o : s.outputs) {
    for (const auto& f : output_files(run, o)) {
      if (!recorded.contains(f)) {
        st.clean = true;
        st.reason = fmt::format("output {} is not in its manifest (changed since)", f);
        return st;
      }
    }
  }
  st.done = true;
  st.reason = "done";
  return st;
}

std::string record_stage(const RunDir& run, const Stage& s, const StageState& state,
                         double seconds) {
  nlohmann::json outputs = nlohmann::json::object();
  for (const auto& o : s.outputs) {
    for (const auto& f : output_files(run, o)) outputs[f] = sha256_file(resolve_output(run, f));
  }
  const std::string digest = digest_of(outputs);
  const double now =  // unix seconds
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const nlohmann::json manifest = {{"stage", s.name},
                                   {"inputs", digest_of(state.input_values)},
                                   {"input_values", state.input_values},
                                   {"outputs", outputs},
                                   {"outputs_digest", digest},
                                   {"seconds", seconds},
                                   {"started_at", now - seconds},
                                   {"finished_at", now}};
  const fs::path p = stage_manifest_path(run, s.name);
  fs::create_directories(p.parent_path());
  write_file_atomic(p, manifest.dump(2));
  return digest;
}

}  // namespace btx
