// btx sweep (sweep.h): points, stage keys, sharing and the run.
#include "btx/study/sweep.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <set>

#include "btx/analysis/sweep_report.h"
#include "btx/run/experts.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/params.h"

namespace btx {

namespace {

constexpr const char* kSeedShare = "seed_share";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t") - a + 1);
}

// The number of experts a config trains.
int64_t expert_count(const RunConfig& c) {
  return static_cast<int64_t>(resolve_experts(c, c.corpus.domains).size());
}

RunConfig with_seed_share(const RunConfig& c, const std::string& value) {
  const auto share = parse_real(value);
  BTX_CHECK(share && *share > 0 && *share < 1,
            "--set seed_share={}: expected a number strictly between 0 and 1 (the seed and the "
            "experts each need at least one step)",
            value);
  const auto seed_tps = static_cast<double>(c.seed_train.tokens_per_step());
  const auto expert_tps = static_cast<double>(c.experts.train.tokens_per_step());
  const auto experts = static_cast<double>(expert_count(c));
  const double budget = static_cast<double>(c.seed_train.steps) * seed_tps +
                        experts * static_cast<double>(c.experts.train.steps) * expert_tps;
  RunConfig out = c;
  out.seed_train.steps = std::llround(*share * budget / seed_tps);
  out.experts.train.steps = std::llround((1 - *share) * budget / (experts * expert_tps));
  BTX_CHECK(out.seed_train.steps >= 1 && out.experts.train.steps >= 1,
            "--set seed_share={}: leaves the seed {} and each expert {} steps of a budget of {} "
            "tokens (each needs at least 1)",
            value, out.seed_train.steps, out.experts.train.steps, budget);
  return out;
}

// `arg` with the run folder `root` written as {run}.
std::string portable(const std::string& arg, const std::string& root) {
  if (arg == root) return "{run}";
  if (arg.rfind(root + "/", 0) == 0) return "{run}" + arg.substr(root.size());
  return arg;
}

}  // namespace

SweepAxis parse_sweep_axis(const std::string& text, const std::string& where) {
  const size_t eq = text.find('=');
  BTX_CHECK(eq != std::string::npos && eq > 0,
            "{} '{}': expected KEY=V1,V2,... (e.g. seed_share=0.2,0.5 or finetune.steps=100,400)",
            where, text);
  SweepAxis axis{trim(text.substr(0, eq)), {}};
  std::set<std::string> seen;
  for (const auto& v : split(text.substr(eq + 1), ',')) {
    const std::string value = trim(v);
    BTX_CHECK(!value.empty(), "{} '{}': an empty value", where, text);
    BTX_CHECK(seen.insert(value).second, "{} '{}': the value '{}' is given twice", where, text,
              value);
    axis.values.push_back(value);
  }
  return axis;
}

RunConfig sweep_config(const RunConfig& c, const std::string& key, const std::string& value) {
  if (key == kSeedShare) return with_seed_share(c, value);
  return set_run_config_value(c, key, value, "--set " + key + "=" + value);
}

std::vector<SweepPoint> sweep_points(const RunConfig& base, const std::vector<SweepAxis>& axes,
                                     const fs::path& root) {
  BTX_CHECK(!axes.empty(), "nothing to sweep: give --set KEY=V1,V2,... (or [study] sweep)");
  std::set<std::string> keys;
  for (const auto& a : axes) {
    BTX_CHECK(keys.insert(a.key).second, "--set {}: the key is swept twice", a.key);
    BTX_CHECK(!a.values.empty(), "--set {}: no values", a.key);
  }
  std::vector<SweepPoint> points;
  std::vector<size_t> at(axes.size(), 0);
  while (true) {
    std::vector<std::pair<std::string, std::string>> settings;
    std::string label;
    RunConfig config = base;
    for (size_t i = 0; i < axes.size(); ++i) {
      const std::string& v = axes[i].values[at[i]];
      settings.push_back({axes[i].key, v});
      config = sweep_config(config, axes[i].key, v);
      label += (label.empty() ? "" : ",") + axes[i].key + "=" + v;
    }
    BTX_CHECK(label.find('/') == std::string::npos,
              "--set {}: a value with '/' cannot name the "
              "point's folder",
              label);
    config.study.sweep.clear();  // a point is a plain study
    points.push_back({settings, label, Run(RunDir{root / label}, config)});
    // The last axis fastest.
    size_t i = axes.size();
    while (i > 0 && ++at[i - 1] == axes[i - 1].values.size()) at[--i] = 0;
    if (i == 0) break;
  }
  return points;
}

std::map<std::string, std::string> stage_keys(const Run& run, const std::vector<Stage>& stages) {
  const RunConfig& c = run.config();
  const std::string root = run.root.string();
  const auto config = run_config_keys(c);
  std::map<std::string, std::string> keys;
  for (const auto& s : stages) {
    nlohmann::json in = {{"name", s.name}, {"version", s.version}};
    for (const auto& cmd : s.commands) {
      nlohmann::json args = nlohmann::json::array();
      for (const auto& a : cmd) args.push_back(portable(a, root));
      in["commands"].push_back(args);
    }
    for (const auto& [k, v] : config) {
      for (const auto& prefix : s.config_keys) {
        if (k.rfind(prefix, 0) == 0) in["config"][k] = v;
      }
    }
    for (const auto& a : s.after) in["after"][a] = keys.count(a) ? keys.at(a) : "";
    for (const auto& o : s.outputs) in["outputs"].push_back(portable(o.string(), root));
    keys[s.name] = sha256_hex(in.dump());
  }
  return keys;
}

SweepPlan plan_sweep(const std::vector<SweepPoint>& points) {
  SweepPlan plan;
  std::vector<std::map<std::string, std::string>> keys;
  for (size_t p = 0; p < points.size(); ++p) {
    plan.stages.push_back(plan_study(points[p].run));
    keys.push_back(stage_keys(points[p].run, plan.stages.back()));
    std::map<std::string, std::string> shared;
    for (const auto& s : plan.stages.back()) {
      for (size_t q = 0; q < p; ++q) {
        auto it = keys[q].find(s.name);
        if (it != keys[q].end() && it->second == keys[p].at(s.name)) {
          shared[s.name] = points[q].label;
          break;
        }
      }
    }
    for (size_t q = 0; q < p; ++q) {
      BTX_CHECK(keys[q] != keys[p],
                "the sweep's points {} and {} run exactly the same stages: the values change "
                "nothing the study does (sweep a key its stages read)",
                points[q].label, points[p].label);
    }
    plan.shared_from.push_back(std::move(shared));
  }
  return plan;
}

std::vector<std::string> share_stages(const SweepPoint& point, const std::vector<Stage>& stages,
                                      const std::map<std::string, std::string>& shared_from,
                                      const fs::path& root) {
  std::vector<std::string> copied;
  std::map<std::string, std::string> digests;
  for (const auto& s : stages) {
    auto it = shared_from.find(s.name);
    if (it != shared_from.end()) {
      const RunDir from{root / it->second};
      StageState here = check_stage(point.run, s, digests);
      if (!here.done && !recorded_output_digest(from, s.name).empty()) {
        if (s.prepare) s.prepare();  // a sub-run's folder and links first
        for (const auto& o : s.outputs) {
          if (o.is_absolute()) continue;  // outside the runs (the shared corpus): already there
          const fs::path src = from.root / o, dst = point.run.root / o;
          fs::remove_all(dst);
          if (!fs::exists(src)) continue;
          fs::create_directories(dst.parent_path());
          fs::copy(src, dst, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
        }
        here = check_stage(point.run, s, digests);
        record_stage(point.run, s, here, 0.0);
        copied.push_back(s.name);
      }
    }
    digests[s.name] = recorded_output_digest(point.run, s.name);
  }
  return copied;
}

void run_sweep(const fs::path& root, const std::vector<SweepAxis>& axes,
               const std::vector<SweepPoint>& points, const StudyOptions& o) {
  const SweepPlan plan = plan_sweep(points);
  std::cout << fmt::format("btx sweep: {} ({} point{})\n", root.string(), points.size(),
                           points.size() == 1 ? "" : "s");
  for (size_t p = 0; p < points.size(); ++p) {
    std::map<std::string, std::vector<std::string>> by_source;
    for (const auto& [stage, from] : plan.shared_from[p]) by_source[from].push_back(stage);
    std::string shares;
    for (const auto& [from, stages] : by_source) {
      shares += fmt::format("; shares {} stage{} with {} ({})", stages.size(),
                            stages.size() == 1 ? "" : "s", from, fmt::join(stages, ", "));
    }
    std::cout << fmt::format("  {}: runs {} of {} stages{} (seed {} steps, experts {} steps)\n",
                             points[p].label, plan.stages[p].size() - plan.shared_from[p].size(),
                             plan.stages[p].size(), shares, points[p].run.config().seed_train.steps,
                             points[p].run.config().experts.train.steps);
  }
  if (o.dry_run) return;
  fs::create_directories(root);
  std::vector<double> seconds;
  for (size_t p = 0; p < points.size(); ++p) {
    const auto& point = points[p];
    std::cout << "\n== " << point.label << " ==\n";
    const auto start = std::chrono::steady_clock::now();
    init_run(point.run, /*force=*/true);
    const auto copied = share_stages(point, plan.stages[p], plan.shared_from[p], root);
    if (!copied.empty()) {
      std::cout << fmt::format("shared from earlier points: {}\n", fmt::join(copied, ", "));
    }
    run_study(point.run, o);
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::vector<SweepPointResult> results;
  for (size_t p = 0; p < points.size(); ++p) {
    const auto& c = points[p].run.config();
    results.push_back(
        {points[p].label, points[p].settings, points[p].run.root, seconds[p],
         c.seed_train.steps * c.seed_train.tokens_per_step(),
         expert_count(c) * c.experts.train.steps * c.experts.train.tokens_per_step()});
  }
  std::vector<std::pair<std::string, std::vector<std::string>>> axis_values;
  for (const auto& a : axes) axis_values.push_back({a.key, a.values});
  const auto table = sweep_results(axis_values, results);
  write_sweep(root, table);
  std::cout << "\n"
            << sweep_markdown(table) << "\nTable: " << (root / "sweep.md").string()
            << "\nReport: " << (root / "sweep.html").string() << "\n";
}

}  // namespace btx
