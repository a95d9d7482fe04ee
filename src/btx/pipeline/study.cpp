#include "btx/pipeline/study.h"

#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "btx/data/corpus.h"
#include "btx/data/corpus_build.h"
#include "btx/merge/method.h"
#include "btx/pipeline/experts.h"
#include "btx/pipeline/results.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/progress.h"
#include "btx/util/subprocess.h"

namespace btx {

namespace {

constexpr const char* kRandomSplit = "random-split";  // sub-run folder, merge and row name

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// The run folder of the random-split experts: a run of its own whose tokenizer, data and seed
// are links to the parent's, so only its experts differ.
fs::path random_split_dir(const RunDir& run) {
  return run.root / kRandomSplit;
}

RunConfig random_split_config(const RunConfig& c) {
  RunConfig r = c;
  r.name = c.name + "-" + kRandomSplit;
  r.experts.split = "random";
  r.experts.count = static_cast<int>(c.corpus.domains.size());
  r.experts.custom.clear();
  r.study.methods.clear();
  r.study.random_split = false;
  return r;
}

void prepare_random_split(const RunDir& run, const RunConfig& c) {
  const RunDir sub{random_split_dir(run)};
  init_run(sub, random_split_config(c), /*force=*/true);
  for (const char* item : {"tokenizer.model", "data", "seed"}) {
    const fs::path link = sub.root / item;
    if (fs::is_symlink(link) || fs::exists(link)) continue;
    fs::create_symlink(fs::path("..") / item, link);
  }
}

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

std::string log_name(const std::string& stage) {
  std::string s = stage;
  std::replace(s.begin(), s.end(), '/', '-');
  return s + ".log";
}

}  // namespace

// ---- [study] --------------------------------------------------------------------------------

std::vector<StudyMethod> study_methods(const RunConfig& c) {
  std::vector<StudyMethod> out;
  std::set<std::string> names = {"seed", kRandomSplit};
  for (size_t i = 0; i < c.study.methods.size(); ++i) {
    const std::string& line = c.study.methods[i];
    const std::string where = fmt::format("study.methods[{}] \"{}\"", i, line);
    try {
      const auto words = split_words(line);
      BTX_CHECK(!words.empty(), "empty entry (expected \"METHOD [--param value ...]\")");
      const MergeMethod& m = find_merge_method(words[0]);
      MergeRequest request;
      request.method = m.name;
      for (size_t w = 1; w < words.size(); w += 2) {
        BTX_CHECK(words[w].rfind("--", 0) == 0 && words[w].size() > 2,
                  "expected --PARAM VALUE pairs after the method, got '{}'", words[w]);
        BTX_CHECK(w + 1 < words.size(), "{} has no value", words[w]);
        const std::string key = words[w].substr(2);
        if (key == "name") {
          request.output_name = words[w + 1];
        } else {
          BTX_CHECK(!request.params.count(key), "{} given twice", words[w]);
          request.params[key] = words[w + 1];
        }
      }
      resolve_merge_params(m, request.params);  // unknown parameters and choices are errors
      StudyMethod s{m.name, merge_output_name(request), request.params, m.routed, m.trains};
      BTX_CHECK(names.insert(s.name).second,
                "the name '{}' is used twice (give one of them --name NAME)", s.name);
      out.push_back(std::move(s));
    } catch (const Error& e) {
      fail("{}: {}", where, e.what());
    }
  }
  return out;
}

void check_study_domains(const RunConfig& c) {
  std::set<std::string> known;
  if (fs::is_directory(c.corpus.dir)) {
    for (const auto& d : list_corpus(c.corpus.dir)) known.insert(d.name);
  }
  if (c.study.build_corpus) {
    for (const auto& s : corpus_domain_specs()) known.insert(s.name);
  }
  BTX_CHECK(!c.corpus.domains.empty(),
            "[corpus] domains is empty: the study needs its training domains named");
  for (const auto* list : {&c.corpus.domains, &c.corpus.novel}) {
    for (const auto& d : *list) {
      BTX_CHECK(known.count(d), "[corpus] {}: unknown domain '{}' (known: {})",
                list == &c.corpus.domains ? "domains" : "novel", d, fmt::join(known, ", "));
    }
  }
}

std::vector<std::string> study_models(const RunConfig& c) {
  std::vector<std::string> models = {"seed"};
  size_t after_ensembles = 1;
  for (const auto& m : study_methods(c)) {
    models.push_back("merged/" + m.name);
    if (m.method == "ensemble") after_ensembles = models.size();
  }
  if (c.study.random_split) {
    models.insert(models.begin() + static_cast<std::ptrdiff_t>(after_ensembles),
                  fmt::format("{}/merged/{}", kRandomSplit, kRandomSplit));
  }
  return models;
}

// ---- the plan -------------------------------------------------------------------------------

std::vector<Stage> plan_study(const RunDir& run, const RunConfig& c) {
  check_study_domains(c);
  const auto methods = study_methods(c);
  const std::string R = run.root.string();
  const auto& et = c.experts.train;
  const auto& ft = c.finetune;
  auto per_step = [](const TrainConfig& t) { return t.batch_size * t.grad_accum * t.seq_len; };
  std::vector<Stage> stages;

  std::vector<std::string> domains = c.corpus.domains;
  domains.insert(domains.end(), c.corpus.novel.begin(), c.corpus.novel.end());
  std::string corpus_stage;
  if (c.study.build_corpus) {
    Stage s{"corpus", "real multi-domain text from Debian packages", {}, {}, {}, {"corpus."}};
    s.commands.push_back({"corpus", "build", "--out", c.corpus.dir, "--domains",
                          fmt::format("{}", fmt::join(domains, ","))});
    for (const auto& d : domains)
      s.outputs.push_back(fs::absolute(fs::path(c.corpus.dir) / (d + ".txt")));
    stages.push_back(std::move(s));
    corpus_stage = "corpus";
  }
  auto needs = [](std::initializer_list<std::string> names) {
    std::vector<std::string> out;
    for (const auto& n : names) {
      if (!n.empty()) out.push_back(n);
    }
    return out;
  };

  stages.push_back({"data",
                    "tokenizer and token shards",
                    needs({corpus_stage}),
                    {{"prepare", "--run", R}},
                    {"tokenizer.model", "data"},
                    {"corpus.", "tokenizer.", "data.", "random_seed"}});
  Stage seed{"seed",
             "the dense seed on the balanced mixture",
             {"data"},
             {{"seed", "--run", R, "--resume"}},
             {"seed", "eval/seed.json"},
             {"model.", "seed.", "random_seed"}};
  seed.progress.push_back(
      {"seed", "seed/metrics.jsonl", c.seed_train.steps, per_step(c.seed_train)});
  stages.push_back(std::move(seed));

  // Experts: branched from the seed, trained alone (a local pool of processes, or Slurm).
  auto expert_commands = [&](const std::string& run_dir) {
    std::vector<std::vector<std::string>> cmds = {{"branch", "--run", run_dir}};
    if (c.study.launcher == "slurm") {
      cmds.push_back({"launch", "--run", run_dir, "--slurm", "--submit", "--wait"});
    } else {
      cmds.push_back({"launch", "--run", run_dir, "--jobs", std::to_string(c.study.jobs)});
    }
    return cmds;
  };
  Stage experts{"experts",   "one expert per domain, each trained alone from the seed",
                {"seed"},    expert_commands(R),
                {"experts"}, {"experts.", "random_seed"}};
  experts.exclusive = true;
  for (const auto& e : resolve_experts(c, c.corpus.domains)) {
    experts.progress.push_back({"expert " + e.name, fs::path("experts") / e.name / "metrics.jsonl",
                                et.steps, per_step(et)});
  }
  stages.push_back(std::move(experts));

  // Every combination: merge (+ finetune of routed models), evaluation, analysis.
  std::vector<std::string> evals = {"seed"}, analyses;  // what the table and the report read
  for (const auto& m : methods) {
    Stage s{"merge/" + m.name,
            fmt::format("{}{}", m.method, m.routed ? ", then finetuned on the mixture" : ""),
            {"experts"},
            {},
            {fs::path("merged") / m.name},
            {}};
    std::vector<std::string> merge = {"merge", "--run", R, "--method", m.method, "--name", m.name};
    for (const auto& [k, v] : m.params) {
      merge.push_back("--" + k);
      merge.push_back(v);
    }
    if (m.trains) {
      merge.push_back("--resume");
      s.config_keys.push_back("finetune.");  // its budget may be matched to finetuning's
      s.progress.push_back({m.name, fs::path("merged") / m.name / "metrics.jsonl", 0, 0});
    }
    s.commands.push_back(merge);
    if (m.routed) {
      s.commands.push_back({"finetune", "--run", R, "--model", "merged/" + m.name, "--resume"});
      s.config_keys.push_back("finetune.");
      s.progress.push_back({"finetune " + m.name, fs::path("merged") / m.name / "metrics.jsonl",
                            ft.steps, per_step(ft)});
    }
    stages.push_back(std::move(s));
    const std::string model = "merged/" + m.name;
    stages.push_back({"eval/" + m.name,
                      "test perplexity per domain",
                      {"merge/" + m.name},
                      {{"eval", "--run", R, "--model", model}},
                      {fs::path("eval") / (m.name + ".json")},
                      {}});
    evals.push_back("eval/" + m.name);
    // Routed models and ensembles are analysed for the report; tag routing has nothing to
    // learn (its routing is the domain label itself, which the analysis does not pass).
    if ((m.routed && m.method != "tag") || m.method == "ensemble") {
      stages.push_back({"analysis/" + m.name,
                        m.routed ? "routing per layer and token" : "posterior along sequences",
                        {"merge/" + m.name},
                        {{"analyze", "--run", R, "--model", model}},
                        {fs::path("analysis") / (m.name + ".json")},
                        {}});
      analyses.push_back("analysis/" + m.name);
    }
  }

  if (c.study.random_split) {
    const std::string sub = random_split_dir(run).string();
    Stage s{kRandomSplit,
            "BTM's baseline: experts on random equal shares, ensembled",
            {"seed"},
            expert_commands(sub),
            {fs::path(kRandomSplit) / "config.toml", fs::path(kRandomSplit) / "experts",
             fs::path(kRandomSplit) / "merged"},
            {"experts.", "random_seed"}};
    s.commands.push_back({"merge", "--run", sub, "--method", "ensemble", "--name", kRandomSplit});
    for (const auto& e : resolve_experts(random_split_config(c), c.corpus.domains)) {
      s.progress.push_back({"random-split " + e.name,
                            fs::path(kRandomSplit) / "experts" / e.name / "metrics.jsonl", et.steps,
                            per_step(et)});
    }
    s.prepare = [run, c] { prepare_random_split(run, c); };
    s.exclusive = true;
    stages.push_back(std::move(s));
    stages.push_back(
        {std::string("eval/") + kRandomSplit,
         "test perplexity per domain",
         {kRandomSplit},
         {{"eval", "--run", R, "--model", fmt::format("{}/merged/{}", kRandomSplit, kRandomSplit)}},
         {fs::path("eval") / (std::string(kRandomSplit) + ".json")},
         {}});
    evals.push_back(std::string("eval/") + kRandomSplit);
  }

  std::vector<std::string> results_cmd = {"results", "--run", R, "--model",
                                          fmt::format("{}", fmt::join(study_models(c), ","))};
  stages.push_back({"results",
                    "the results table (results.md, results.json)",
                    evals,
                    {results_cmd},
                    {"results.json", "results.md"},
                    {}});
  if (c.study.report) {
    std::vector<std::string> after = {"results"};
    after.insert(after.end(), analyses.begin(), analyses.end());
    stages.push_back({"report",
                      "report.html: table, curves, heatmaps, token views",
                      after,
                      {{"report", "--run", R}},
                      {"report.html"},
                      {}});
  }
  return stages;
}

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

StageState check_stage(const RunDir& run, const RunConfig& c, const Stage& s,
                       const std::map<std::string, std::string>& output_digests) {
  // The inputs: the commands, the config values the stage reads, the outputs it reads.
  nlohmann::json inputs = {{"commands", s.commands}};
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

// ---- running --------------------------------------------------------------------------------

std::vector<std::string> stage_progress_lines(const RunDir& run, const Stage& s) {
  std::vector<std::string> out;
  for (const auto& p : s.progress) {
    const auto rec = last_training_record(run.root / p.metrics);
    if (!rec) continue;
    const int64_t step = rec->value("step", int64_t{0});
    // A job whose length the plan cannot know (0) writes its total into its records.
    const int64_t steps = p.steps > 0 ? p.steps : rec->value("steps", int64_t{0});
    const int64_t per_step = p.tokens_per_step > 0 ? p.tokens_per_step
                             : step > 0            ? rec->value("tokens", int64_t{0}) / step
                                                   : 0;
    const double tps = rec->value("tokens_per_s", 0.0);
    const bool finished = steps > 0 && step >= steps;
    const double eta = training_eta_seconds(*rec, steps, per_step);
    out.push_back(fmt::format(
        "      {:<26} step {:>10}  loss {:>7}  {:>8} tok/s  {}", p.label,
        steps > 0 ? fmt::format("{}/{}", step, steps) : std::to_string(step),
        rec->contains("loss") ? fmt::format("{:.3f}", (*rec)["loss"].get<double>()) : "",
        tps > 0 ? fmt::format("{:.0f}", tps) : "",
        finished ? "done" : (eta >= 0 ? "ETA " + format_eta(eta) : "")));
  }
  return out;
}

namespace {

void clean_outputs(const RunDir& run, const Stage& s) {
  for (const auto& o : s.outputs) {
    if (o.is_absolute()) continue;  // outside the run (the shared corpus): its own build checks it
    fs::remove_all(run.root / o);
  }
  fs::remove(stage_manifest_path(run, s.name));
}

std::string tail_lines(const fs::path& file, size_t n) {
  std::ifstream in(file);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  std::string out;
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i)
    out += "    | " + lines[i] + "\n";
  return out;
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

namespace {

// A stage being run: which of its commands, and that command's process.
struct RunningStage {
  size_t index = 0;
  StageState state;
  size_t command = 0;
  pid_t pid = -1;
  Clock::time_point started;
  fs::path log;
};

}  // namespace

void run_study(const RunDir& run, const RunConfig& c, const StudyOptions& o) {
  const auto stages = plan_study(run, c);
  const auto started = Clock::now();
  const size_t n = stages.size();
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const size_t jobs = static_cast<size_t>(std::max(1, o.jobs));
  LiveView view(stdout, o.plain_interval);
  std::map<std::string, std::string> digests;  // finished stage -> outputs digest
  std::set<std::string> ran;                   // stages run in this invocation
  std::vector<bool> started_stage(n, false);
  std::vector<RunningStage> running;
  std::vector<std::optional<StageState>> checked(n);
  view.print(fmt::format("btx run: {} ({} stages, up to {} at a time){}", run.root.string(), n,
                         jobs, o.dry_run ? ", dry run" : ""));
  auto tag = [&](size_t i) { return fmt::format("[{:>2}/{}] {:<24}", i + 1, n, stages[i].name); };
  auto ready = [&](size_t i) {
    return std::all_of(stages[i].after.begin(), stages[i].after.end(),
                       [&](const std::string& a) { return digests.count(a) > 0; });
  };
  // Starts command `r.command` of a running stage. With stages side by side, each gets its share
  // of the cores for BLAS (a stage alone keeps the environment as it is).
  auto start_command = [&](RunningStage& r, size_t side_by_side) {
    const auto& args = stages[r.index].commands[r.command];
    {
      std::ofstream header(r.log, std::ios::app);
      header << "\n$ btx " << shell_join(args) << "\n";
    }
    std::vector<std::string> argv = {o.btx_binary.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::map<std::string, std::string> env;
    if (side_by_side > 1) {
      env["OPENBLAS_NUM_THREADS"] =
          std::to_string(std::max(1, cores / static_cast<int>(side_by_side)));
    }
    r.pid = spawn_to_log(argv, r.log, env);
  };
  // Every stage it can start now (dependencies finished, a free slot, exclusive stages alone),
  // in plan order; stages found done are marked so on the way.
  auto start_ready = [&]() {
    bool progress = true;
    while (progress) {
      progress = false;
      for (size_t i = 0; i < n; ++i) {
        if (started_stage[i] || !ready(i)) continue;
        const Stage& s = stages[i];
        const bool busy_exclusive = std::any_of(running.begin(), running.end(),
                                                [&](auto& r) { return stages[r.index].exclusive; });
        // Checked once when it becomes ready: its inputs cannot change while it waits.
        if (!checked[i]) checked[i] = check_stage(run, c, s, digests);
        StageState st = *checked[i];
        if (!st.done &&
            (running.size() >= jobs || busy_exclusive || (s.exclusive && !running.empty())))
          continue;
        started_stage[i] = true;
        progress = true;
        // A stage never finished, after a stage it needs ran again: its partial outputs are
        // stale.
        const bool upstream_ran = std::any_of(s.after.begin(), s.after.end(),
                                              [&](const auto& a) { return ran.count(a) > 0; });
        if (!st.done && !st.clean && upstream_ran && !st.untouched) {
          st.clean = true;
          st.reason = "a stage it needs ran again: starting over";
        }
        if (st.done || o.dry_run) {
          digests[s.name] = st.done ? recorded_output_digest(run, s.name) : "(dry run)";
          view.print(fmt::format("  {} {}", tag(i), st.done ? "done" : "to run: " + st.reason));
          if (!st.done) {
            for (const auto& cmd : s.commands)
              view.print(fmt::format("        $ btx {}", shell_join(cmd)));
          }
          continue;
        }
        if (!st.untouched) view.print(fmt::format("  {} {}", tag(i), st.reason));
        if (st.clean) clean_outputs(run, s);
        RunningStage r;
        r.index = i;
        r.state = st;
        r.started = Clock::now();
        r.log = run.root / "logs" / log_name(s.name);
        fs::create_directories(r.log.parent_path());
        if (s.prepare) s.prepare();
        running.push_back(std::move(r));
      }
    }
    // Start the first command of the stages just added (now that their number is known).
    for (auto& r : running) {
      if (r.pid < 0) start_command(r, running.size());
    }
  };

  start_ready();
  while (!running.empty()) {
    for (auto it = running.begin(); it != running.end();) {
      const auto code = poll_exit(it->pid);
      if (!code) {
        ++it;
        continue;
      }
      const Stage& s = stages[it->index];
      if (*code != 0) {
        view.update({});
        view.print(fmt::format("  {} FAILED: `btx {}` exited with code {}; last lines of {}:\n{}",
                               tag(it->index), shell_join(s.commands[it->command]), *code,
                               it->log.string(), tail_lines(it->log, 15)));
        // The stages beside it stop too; they continue from their checkpoints next time.
        for (auto& other : running) {
          if (other.pid != it->pid) ::kill(other.pid, SIGTERM);
        }
        for (auto& other : running) {
          if (other.pid != it->pid) ::waitpid(other.pid, nullptr, 0);
        }
        fail("stage {} failed (log: {}); fix the cause and run `btx run` again to continue", s.name,
             it->log.string());
      }
      if (++it->command < s.commands.size()) {
        start_command(*it, running.size());
        ++it;
        continue;
      }
      const double secs = seconds_since(it->started);
      digests[s.name] = record_stage(run, s, it->state, secs);
      ran.insert(s.name);
      view.update({});
      view.print(fmt::format("  {} done in {}", tag(it->index), format_duration(secs)));
      it = running.erase(it);
    }
    start_ready();
    std::vector<std::string> lines;
    for (const auto& r : running) {
      lines.push_back(fmt::format("  {} running {}  (total {})", tag(r.index),
                                  format_duration(seconds_since(r.started)),
                                  format_duration(seconds_since(started))));
      for (auto& l : stage_progress_lines(run, stages[r.index])) lines.push_back(std::move(l));
    }
    view.update(lines);
    if (!running.empty())
      std::this_thread::sleep_for(std::chrono::duration<double>(o.refresh_seconds));
  }
  view.update({});
  const size_t undone = n - digests.size();  // a finished stage has its outputs' digest
  BTX_CHECK(undone == 0, "btx run: {} stage(s) could not start (a stage they need is missing)",
            undone);
  if (o.dry_run) return;
  view.print(fmt::format("btx run: {} stages done ({} run now, {} already done) in {}: {}\n", n,
                         ran.size(), n - ran.size(), format_duration(seconds_since(started)),
                         run.root.string()));
  if (fs::exists(run.root / "results.md")) std::cout << read_file(run.root / "results.md");
  if (fs::exists(run.root / "report.html"))
    std::cout << "\nReport: " << (run.root / "report.html").string() << "\n";
}

const std::string& default_study_config() {
  static const std::string text =
#include "btx/default_config.inc"
      ;
  return text;
}

}  // namespace btx
