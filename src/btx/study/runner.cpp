// Running the study: the stages that are not done, each command a child process with its log,
// several stages side by side where they are independent, one live view (study.h).
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

#include "btx/analysis/results.h"
#include "btx/corpus/corpus.h"
#include "btx/corpus/corpus_build.h"
#include "btx/merge/method.h"
#include "btx/run/experts.h"
#include "btx/study/study.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/progress.h"
#include "btx/util/subprocess.h"

namespace btx {

namespace {

std::string log_name(const std::string& stage) {
  std::string s = stage;
  std::replace(s.begin(), s.end(), '/', '-');
  return s + ".log";
}

}  // namespace

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

// One invocation of the study, in phases (as Trainer is): plan and check the stages, start every
// stage that is ready (skipping those found done), reap the ones that end, show the running ones,
// and the summary. Stages run as processes of `btx`, up to `jobs` at a time.
class StudyRunner {
 public:
  StudyRunner(const Run& run, const StudyOptions& o)
      : run_(run),
        o_(o),
        stages_(plan_study(run)),
        n_(stages_.size()),
        cores_(static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))),
        jobs_(static_cast<size_t>(std::max(1, o.jobs))),
        view_(stdout, o.plain_interval),
        started_stage_(n_, false),
        checked_(n_) {}

  void run() {
    view_.print(fmt::format("btx run: {} ({} stages, up to {} at a time){}", run_.root.string(), n_,
                            jobs_, o_.dry_run ? ", dry run" : ""));
    start_ready();
    while (!running_.empty()) {
      reap();
      start_ready();
      show_running();
      if (!running_.empty())
        std::this_thread::sleep_for(std::chrono::duration<double>(o_.refresh_seconds));
    }
    view_.update({});
    const size_t undone = n_ - digests_.size();  // a finished stage has its outputs' digest
    BTX_CHECK(undone == 0, "btx run: {} stage(s) could not start (a stage they need is missing)",
              undone);
    if (!o_.dry_run) summary();
  }

 private:
  std::string tag(size_t i) const {
    return fmt::format("[{:>2}/{}] {:<24}", i + 1, n_, stages_[i].name);
  }
  bool ready(size_t i) const {
    return std::all_of(stages_[i].after.begin(), stages_[i].after.end(),
                       [&](const std::string& a) { return digests_.count(a) > 0; });
  }

  // Starts command `r.command` of a running stage. With stages side by side, each gets its share
  // of the cores for BLAS (a stage alone keeps the environment as it is).
  void start_command(RunningStage& r, size_t side_by_side) {
    const auto& args = stages_[r.index].commands[r.command];
    {
      std::ofstream header(r.log, std::ios::app);
      header << "\n$ btx " << shell_join(args) << "\n";
    }
    std::vector<std::string> argv = {o_.btx_binary.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::map<std::string, std::string> env;
    if (side_by_side > 1) {
      env["OPENBLAS_NUM_THREADS"] =
          std::to_string(std::max(1, cores_ / static_cast<int>(side_by_side)));
    }
    r.pid = spawn_to_log(argv, r.log, env);
  }

  // Stage i, ready: marked done (found done, or a dry run) or started when a slot is free (false:
  // it waits).
  bool try_start(size_t i) {
    const Stage& s = stages_[i];
    const bool busy_exclusive = std::any_of(running_.begin(), running_.end(),
                                            [&](auto& r) { return stages_[r.index].exclusive; });
    // Checked once when it becomes ready: its inputs cannot change while it waits.
    if (!checked_[i]) checked_[i] = check_stage(run_, s, digests_);
    StageState st = *checked_[i];
    if (!st.done &&
        (running_.size() >= jobs_ || busy_exclusive || (s.exclusive && !running_.empty())))
      return false;
    started_stage_[i] = true;
    // A stage never finished, after a stage it needs ran again: its partial outputs are stale.
    const bool upstream_ran = std::any_of(s.after.begin(), s.after.end(),
                                          [&](const auto& a) { return ran_.count(a) > 0; });
    if (!st.done && !st.clean && upstream_ran && !st.untouched) {
      st.clean = true;
      st.reason = "a stage it needs ran again: starting over";
    }
    if (st.done || o_.dry_run) {
      digests_[s.name] = st.done ? recorded_output_digest(run_, s.name) : "(dry run)";
      view_.print(fmt::format("  {} {}", tag(i), st.done ? "done" : "to run: " + st.reason));
      if (!st.done) {
        for (const auto& cmd : s.commands)
          view_.print(fmt::format("        $ btx {}", shell_join(cmd)));
      }
      return true;
    }
    if (!st.untouched) view_.print(fmt::format("  {} {}", tag(i), st.reason));
    if (st.clean) clean_outputs(run_, s);
    RunningStage r;
    r.index = i;
    r.state = st;
    r.started = Clock::now();
    r.log = run_.root / "logs" / log_name(s.name);
    fs::create_directories(r.log.parent_path());
    if (s.prepare) s.prepare();
    running_.push_back(std::move(r));
    return true;
  }

  // Every stage it can start now (dependencies finished, a free slot, exclusive stages alone),
  // in plan order; stages found done are marked so on the way.
  void start_ready() {
    bool progress = true;
    while (progress) {
      progress = false;
      for (size_t i = 0; i < n_; ++i) {
        if (!started_stage_[i] && ready(i) && try_start(i)) progress = true;
      }
    }
    // Start the first command of the stages just added (now that their number is known).
    for (auto& r : running_) {
      if (r.pid < 0) start_command(r, running_.size());
    }
  }

  // The running stages whose command ended: the next command, or the stage recorded as done. A
  // command that failed stops the stages beside it and is an error naming its log.
  void reap() {
    for (auto it = running_.begin(); it != running_.end();) {
      const auto code = poll_exit(it->pid);
      if (!code) {
        ++it;
        continue;
      }
      const Stage& s = stages_[it->index];
      if (*code != 0) failed(*it, *code);
      if (++it->command < s.commands.size()) {
        start_command(*it, running_.size());
        ++it;
        continue;
      }
      const double secs = seconds_since(it->started);
      digests_[s.name] = record_stage(run_, s, it->state, secs);
      ran_.insert(s.name);
      view_.update({});
      view_.print(fmt::format("  {} done in {}", tag(it->index), format_duration(secs)));
      it = running_.erase(it);
    }
  }

  [[noreturn]] void failed(const RunningStage& r, int code) {
    const Stage& s = stages_[r.index];
    view_.update({});
    view_.print(fmt::format("  {} FAILED: `btx {}` exited with code {}; last lines of {}:\n{}",
                            tag(r.index), shell_join(s.commands[r.command]), code, r.log.string(),
                            tail_lines(r.log, 15)));
    // The stages beside it stop too; they continue from their checkpoints next time.
    for (auto& other : running_) {
      if (other.pid != r.pid) ::kill(other.pid, SIGTERM);
    }
    for (auto& other : running_) {
      if (other.pid != r.pid) ::waitpid(other.pid, nullptr, 0);
    }
    fail("stage {} failed (log: {}); fix the cause and run `btx run` again to continue", s.name,
         r.log.string());
  }

  void show_running() {
    std::vector<std::string> lines;
    for (const auto& r : running_) {
      lines.push_back(fmt::format("  {} running {}  (total {})", tag(r.index),
                                  format_duration(seconds_since(r.started)),
                                  format_duration(seconds_since(started_))));
      for (auto& l : stage_progress_lines(run_, stages_[r.index])) lines.push_back(std::move(l));
    }
    view_.update(lines);
  }

  void summary() {
    view_.print(fmt::format("btx run: {} stages done ({} run now, {} already done) in {}: {}\n", n_,
                            ran_.size(), n_ - ran_.size(), format_duration(seconds_since(started_)),
                            run_.root.string()));
    if (fs::exists(run_.root / "results.md")) std::cout << read_file(run_.root / "results.md");
    if (fs::exists(run_.root / "report.html"))
      std::cout << "\nReport: " << (run_.root / "report.html").string() << "\n";
  }

  const Run& run_;
  const StudyOptions& o_;
  const std::vector<Stage> stages_;
  const size_t n_;
  const int cores_;
  const size_t jobs_;
  const Clock::time_point started_ = Clock::now();
  LiveView view_;
  std::map<std::string, std::string> digests_;  // finished stage -> outputs digest
  std::set<std::string> ran_;                   // stages run in this invocation
  std::vector<bool> started_stage_;
  std::vector<RunningStage> running_;
  std::vector<std::optional<StageState>> checked_;
};

}  // namespace

void run_study(const Run& run, const StudyOptions& o) {
  if (!o.dry_run) tidy_run(run);  // before any stage is checked against the files
  StudyRunner(run, o).run();
}

}  // namespace btx
