#include "btx/run/launch.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "btx/run/experts.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/progress.h"
#include "btx/util/subprocess.h"

namespace btx {

namespace {

// What one expert's job runs (after the binary): `btx train`, resuming, LibTorch on one thread
// (the job's cores go to OpenBLAS; docs/benchmarks.md).
std::vector<std::string> expert_command(const std::string& run, const std::string& expert) {
  TrainExpertArgs a;
  a.run = run;
  a.expert = expert;
  a.resume = true;
  a.threads = 1;
  return command_line("train", a);
}

struct Child {
  std::string name;
  pid_t pid = -1;
  std::chrono::steady_clock::time_point started;
  int gpu = -1;  // the GPU it holds (-1: none)
};

// Rendezvous variables of a data-parallel launch: an expert started here is an independent job.
const std::vector<std::string> kRendezvousVars = {"WORLD_SIZE",
                                                  "RANK",
                                                  "LOCAL_RANK",
                                                  "SLURM_STEP_NUM_TASKS",
                                                  "SLURM_PROCID",
                                                  "SLURM_LOCALID",
                                                  "TORCHELASTIC_USE_AGENT_STORE"};

}  // namespace

LaunchResult launch_local(const RunDir& run, const LaunchOptions& o) {
  const RunConfig c = load_run(run);
  BTX_CHECK(o.jobs >= 1, "--jobs must be >= 1, got {}", o.jobs);
  std::vector<int> free_gpus = o.gpus;  // those no running expert holds
  for (size_t i = 0; i < o.gpus.size(); ++i) {
    BTX_CHECK(o.gpus[i] >= 0, "--gpus: {} is not a GPU index", o.gpus[i]);
    BTX_CHECK(std::count(o.gpus.begin(), o.gpus.end(), o.gpus[i]) == 1,
              "--gpus: GPU {} is listed twice (one expert per GPU at a time)", o.gpus[i]);
  }
  const int jobs = o.gpus.empty() ? o.jobs : std::min(o.jobs, static_cast<int>(o.gpus.size()));
  BTX_CHECK(fs::exists(o.btx_binary), "btx binary {} not found", o.btx_binary.string());
  std::vector<std::string> queue;
  tidy_run(run);
  const auto experts = list_experts(run);
  BTX_CHECK(!experts.empty(), "{} has no experts: run `btx branch --run {}` first",
            run.root.string(), run.root.string());
  for (const auto& name : o.only) find_expert(run, name);  // unknown names are errors
  for (const auto& e : experts) {
    if (!o.only.empty() && std::find(o.only.begin(), o.only.end(), e.name) == o.only.end())
      continue;
    auto s = load_train_state(expert_dir(run, e.name));
    if (!(s && s->done)) queue.push_back(e.name);
  }
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = o.threads_per_job > 0 ? o.threads_per_job : std::max(1, cores / jobs);
  std::cout << fmt::format("launch: {} experts to train, {} at a time, {} BLAS thread(s) each{}\n",
                           queue.size(), jobs, threads,
                           o.gpus.empty() ? "" : fmt::format(", GPUs {}", fmt::join(o.gpus, ",")));
  const int64_t steps = c.experts.train.steps;
  const int64_t tokens_per_step = c.experts.train.tokens_per_step();

  LaunchResult result;
  std::vector<Child> running;
  size_t next = 0;
  auto last_print = std::chrono::steady_clock::now() - std::chrono::hours(1);
  auto print_progress = [&](bool force) {
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_print < std::chrono::duration<double>(o.refresh_seconds)) return;
    last_print = now;
    std::string out = fmt::format("{:<20} {:<8} {:>11} {:>8} {:>10} {:>8}\n", "expert", "state",
                                  "step", "loss", "tok/s", "ETA");
    for (const auto& name : queue) {
      std::string state = "queued";
      for (const auto& ch : running) {
        if (ch.name == name) state = "running";
      }
      if (std::find(result.done.begin(), result.done.end(), name) != result.done.end())
        state = "done";
      if (std::find(result.failed.begin(), result.failed.end(), name) != result.failed.end()) {
        state = "FAILED";
      }
      const auto m = last_training_record(expert_dir(run, name) / "metrics.jsonl")
                         .value_or(nlohmann::json::object());
      const int64_t step = m.value("step", int64_t{0});
      const double tps = m.value("tokens_per_s", 0.0);
      const double eta = training_eta_seconds(m, steps, tokens_per_step);
      out += fmt::format("{:<20} {:<8} {:>11} {:>8} {:>10} {:>8}\n", name, state,
                         fmt::format("{}/{}", step, steps),
                         m.contains("loss") ? fmt::format("{:.4f}", m["loss"].get<double>()) : "",
                         tps > 0 ? fmt::format("{:.0f}", tps) : "",
                         state == "running" ? format_eta(eta) : "");
    }
    std::cout << out << std::flush;
  };

  while (next < queue.size() || !running.empty()) {
    while (next < queue.size() && static_cast<int>(running.size()) < jobs) {
      const std::string& name = queue[next++];
      const fs::path log = experts_dir(run) / (name + ".log");
      std::vector<std::string> argv = {o.btx_binary.string()};
      for (auto& w : expert_command(run.root.string(), name)) argv.push_back(std::move(w));
      std::map<std::string, std::string> env = {{"OMP_NUM_THREADS", "1"},
                                                {"OPENBLAS_NUM_THREADS", std::to_string(threads)}};
      int gpu = -1;
      if (!free_gpus.empty()) {  // the expert sees its GPU alone, as cuda:0
        gpu = free_gpus.front();
        free_gpus.erase(free_gpus.begin());
        env["CUDA_VISIBLE_DEVICES"] = std::to_string(gpu);
        env["BTX_DEVICE"] = "cuda:0";
      }
      // Rendezvous variables of a data-parallel launch are dropped: each expert is its own job.
      running.push_back({name, spawn_to_log(argv, log, env, kRendezvousVars),
                         std::chrono::steady_clock::now(), gpu});
    }
    for (auto it = running.begin(); it != running.end();) {
      if (const auto code = poll_exit(it->pid)) {
        (*code == 0 ? result.done : result.failed).push_back(it->name);
        if (*code != 0) {
          std::cout << fmt::format("launch: expert '{}' failed (exit code {}); log: {}\n", it->name,
                                   *code, (experts_dir(run) / (it->name + ".log")).string());
        }
        if (it->gpu >= 0) free_gpus.push_back(it->gpu);
        it = running.erase(it);
        print_progress(true);
      } else {
        ++it;
      }
    }
    print_progress(false);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  print_progress(true);
  return result;
}

fs::path slurm_script_path(const RunDir& run) {
  return run.root / "slurm" / "train_experts.sbatch";
}

std::string slurm_script(const RunDir& run, const std::vector<std::string>& experts,
                         const SlurmOptions& o) {
  BTX_CHECK(!experts.empty(), "no experts to put in a Slurm array");
  const fs::path root = fs::absolute(run.root);
  std::string names;
  for (const auto& e : experts) names += " " + e;
  std::string s = "#!/bin/bash\n";
  s += "# Trains the experts of " + root.string() + " as a Slurm job array, one task per\n";
  s += "# expert, each an independent `btx train --expert` against the shared run folder.\n";
  s += fmt::format("#SBATCH --job-name=btx-experts\n#SBATCH --array=0-{}\n", experts.size() - 1);
  s += fmt::format("#SBATCH --cpus-per-task={}\n#SBATCH --time={}\n", o.cpus_per_task, o.time);
  s += "#SBATCH --output=" + (root / "slurm" / "%x-%A_%a.out").string() + "\n";
  if (!o.partition.empty()) s += "#SBATCH --partition=" + o.partition + "\n";
  for (const auto& a : o.sbatch_args) s += "#SBATCH " + a + "\n";
  s += "set -euo pipefail\n";
  s += "EXPERTS=(" + names.substr(1) + ")\n";
  s += "NAME=${EXPERTS[$SLURM_ARRAY_TASK_ID]}\n";
  // The task's cores go to OpenBLAS; LibTorch keeps one intra-op thread (docs/benchmarks.md).
  s += "export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}\n";
  s += "exec " + fs::absolute(o.btx_binary).string();
  for (const auto& w : expert_command(root.string(), "$NAME")) {
    s += " " + (w == "$NAME" ? "\"$NAME\"" : w);
  }
  s += "\n";
  return s;
}

std::string parse_sbatch_job_id(const std::string& out) {
  std::string id = out.substr(0, out.find_first_of(";\n"));
  const auto first = id.find_first_not_of(" \t\r");
  id = first == std::string::npos ? "" : id.substr(first);
  while (!id.empty() && std::isspace(static_cast<unsigned char>(id.back()))) id.pop_back();
  BTX_CHECK(!id.empty() && std::all_of(id.begin(), id.end(), ::isdigit),
            "sbatch --parsable printed '{}', not a job id", out);
  return id;
}

std::string submit_slurm(const fs::path& script) {
  const std::string out = check_output({"sbatch", "--parsable", script.string()},
                                       "Slurm submission", RunOptions{{}, true});
  return parse_sbatch_job_id(out);
}

fs::path slurm_task_log(const RunDir& run, const std::string& job, size_t task) {
  return fs::absolute(run.root) / "slurm" / fmt::format("btx-experts-{}_{}.out", job, task);
}

namespace {
// How many of the job's array tasks squeue still lists (pending or running); nullopt when
// squeue could not answer (the controller busy, say): the caller asks again later. A job that
// has left the queue is "Invalid job id" for squeue: none left.
std::optional<size_t> queued_tasks(const std::string& job) {
  const RunResult r =
      run_process({"squeue", "--noheader", "--jobs", job, "--format", "%i"}, RunOptions{{}, true});
  if (r.exit_code != 0) {
    if (r.err.find("Invalid job id") != std::string::npos) return size_t{0};
    spdlog::warn("squeue --jobs {} failed (exit code {}): {}; asking again later", job, r.exit_code,
                 r.err);
    return std::nullopt;
  }
  size_t n = 0;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);)
    n += line.find_first_not_of(" \t") != std::string::npos;
  return n;
}
}  // namespace

void wait_for_slurm(const RunDir& run, const std::vector<std::string>& names,
                    const std::string& job, double poll_seconds) {
  const auto unfinished = [&] {
    std::vector<size_t> out;
    for (size_t i = 0; i < names.size(); ++i) {
      const auto s = load_train_state(expert_dir(run, names[i]));
      if (!(s && s->done)) out.push_back(i);
    }
    return out;
  };
  std::string last;
  while (true) {
    // The queue is read before the checkpoints: a task that leaves it has written its
    // checkpoint already, so "none queued" and an unfinished expert mean that task ended early.
    const auto queued = queued_tasks(job);
    const auto left = unfinished();
    if (left.empty()) return;
    if (queued && *queued == 0) {
      std::string which;
      for (size_t i : left) {
        which += fmt::format("\n  {} (array task {}): log {}", names[i], i,
                             slurm_task_log(run, job, i).string());
      }
      fail(
          "Slurm job {} has ended but {} of {} expert(s) did not finish (a task failed or ran out "
          "of time; run `btx launch --run {} --slurm --submit --wait` again to resume them):{}",
          job, left.size(), names.size(), run.root.string(), which);
    }
    const std::string now = format_status(run_status(run));
    if (now != last) std::cout << now << std::flush;
    last = now;
    std::this_thread::sleep_for(std::chrono::duration<double>(poll_seconds));
  }
}

void launch_slurm(const RunDir& run, const SlurmOptions& o, const SlurmLaunch& l,
                  std::ostream& out) {
  std::vector<std::string> names;
  tidy_run(run);
  for (const auto& e : list_experts(run)) names.push_back(e.name);
  BTX_CHECK(!names.empty(), "{} has no experts: run `btx branch --run {}` first", run.root.string(),
            run.root.string());
  const std::string script = slurm_script(run, names, o);
  if (l.dry_run) {
    out << script;
    return;
  }
  const fs::path path = slurm_script_path(run);
  write_file_atomic(path, script);
  fs::permissions(path, fs::perms::owner_exec, fs::perm_options::add);
  out << "wrote " << path.string() << "\n";
  if (!l.submit) return;
  BTX_CHECK(on_path("sbatch"),
            "sbatch is not installed here, so the script cannot be submitted from this machine: "
            "it is at {}; run `sbatch {}` on a Slurm login node that mounts the run directory",
            path.string(), path.string());
  if (l.wait) {
    BTX_CHECK(on_path("squeue"),
              "--wait needs squeue to see the job's tasks, and it is not installed here");
  }
  const std::string job = submit_slurm(path);
  out << fmt::format(
      "submitted Slurm job {}: {} task(s), logs {}\n", job, names.size(),
      slurm_task_log(run, job, 0).parent_path().string() + "/btx-experts-" + job + "_<task>.out");
  if (l.wait) wait_for_slurm(run, names, job, l.poll_seconds);
}

}  // namespace btx
