// `btx branch`, `btx train`, `btx launch`, `btx status`: the experts of Branch-Train-Merge.
#include <spdlog/spdlog.h>

#include <iostream>

#include "btx/merge/grow.h"
#include "btx/run/experts.h"
#include "btx/run/launch.h"
#include "btx/train/checkpoint.h"
#include "btx/train/distributed.h"
#include "btx/util/error.h"
#include "cli/commands.h"

namespace btx::cli {

namespace {
fs::path self_binary() {
  return fs::read_symlink("/proc/self/exe");
}

// "a=2,b" -> {a: 2, b: 1}
std::map<std::string, double> parse_mixture(const std::vector<std::string>& items) {
  std::map<std::string, double> out;
  for (const auto& item : items) {
    const auto eq = item.find('=');
    const std::string name = item.substr(0, eq);
    double w = 1.0;
    if (eq != std::string::npos) {
      try {
        w = std::stod(item.substr(eq + 1));
      } catch (const std::exception&) {
        fail("--domains: weight in '{}' is not a number", item);
      }
    }
    BTX_CHECK(!name.empty() && w >= 0, "--domains: '{}' must be NAME or NAME=WEIGHT (>= 0)", item);
    out[name] = w;
  }
  return out;
}
}  // namespace

std::vector<Command> add_expert_commands(CLI::App& app) {
  std::vector<Command> out;

  struct BranchArgs {
    std::string run, add;
    std::vector<std::string> domains;
  };
  auto b = std::make_shared<BranchArgs>();
  auto* branch = app.add_subcommand(
      "branch",
      "Branch the experts of the run's config from the finished seed (exact copies), "
      "or --add one later, initialised from the posterior-weighted average of the "
      "trained experts (BTM)");
  branch->add_option("--run", b->run, "Run directory")->required();
  branch->add_option("--add", b->add, "Name of a new expert to add");
  branch->add_option("--domains", b->domains, "With --add: its domains, NAME or NAME=WEIGHT")
      ->delimiter(',');
  out.push_back({branch, [b] {
                   const Run run = Run::open(b->run);
                   if (b->add.empty()) {
                     BTX_CHECK(b->domains.empty(), "--domains needs --add NAME");
                     const auto names = branch_experts(run);
                     std::cout << fmt::format("{} expert(s) branched; {} in all\n", names.size(),
                                              list_experts(run).size());
                     return;
                   }
                   BTX_CHECK(!b->domains.empty(), "--add {} needs --domains", b->add);
                   grow_expert(run, b->add, parse_mixture(b->domains));
                 }});

  struct TrainArgs {
    std::string run, expert;
    bool resume = false;
    int64_t stop_after = 0;
    int threads = 0;
  };
  auto t = std::make_shared<TrainArgs>();
  auto* train = app.add_subcommand("train", "Train one expert from its branch point");
  train->add_option("--run", t->run, "Run directory")->required();
  train->add_option("--expert", t->expert, "Expert name")->required();
  train->add_flag("--resume", t->resume, "Continue from the expert's last checkpoint");
  train->add_option("--stop-after", t->stop_after,
                    "Stop with a resumable checkpoint after this step (time-limited slots)");
  train->add_option("--threads", t->threads, "LibTorch intra-op threads (0: the config's)");
  out.push_back({train, [t] {
                   const Run run = Run::open(t->run);
                   distributed_from_env();  // data parallel when WORLD_SIZE > 1
                   train_expert(run, t->expert, t->resume, t->stop_after, t->threads);
                 }});

  struct LaunchArgs {
    std::string run;
    LaunchOptions local;
    SlurmOptions slurm;
    SlurmLaunch launch;
    bool use_slurm = false;
  };
  auto l = std::make_shared<LaunchArgs>();
  auto* launch = app.add_subcommand(
      "launch", "Train every unfinished expert: a local pool of processes, or a Slurm job array");
  launch->add_option("--run", l->run, "Run directory")->required();
  auto* jobs = launch
                   ->add_option("--jobs,-j", l->local.jobs,
                                "Experts training at once (with --gpus: one per GPU)")
                   ->capture_default_str();
  launch->add_option("--threads-per-job", l->local.threads_per_job,
                     "BLAS threads per expert (0: cores / jobs; LibTorch keeps 1)");
  launch->add_option("--only", l->local.only, "Only these experts")->delimiter(',');
  launch
      ->add_option("--gpus", l->local.gpus,
                   "GPU indices (e.g. 0,1,2,3): each expert trains on one of them, one expert "
                   "per GPU at a time (--jobs, when given, caps them)")
      ->delimiter(',');
  launch->add_flag("--slurm", l->use_slurm, "Write a Slurm job-array script instead");
  launch->add_flag("--submit", l->launch.submit, "With --slurm: submit it with sbatch");
  launch->add_flag("--dry-run", l->launch.dry_run, "With --slurm: print the script, write nothing");
  launch->add_flag("--wait", l->launch.wait,
                   "With --slurm --submit: wait until every expert has finished (`btx run` "
                   "does), showing their progress; fails naming the experts whose tasks "
                   "ended unfinished");
  launch
      ->add_option("--poll-seconds", l->launch.poll_seconds,
                   "With --wait: seconds between looks at the checkpoints and squeue")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  launch->add_option("--cpus-per-task", l->slurm.cpus_per_task, "Slurm: CPUs per expert")
      ->capture_default_str();
  launch->add_option("--time", l->slurm.time, "Slurm: time limit per task")->capture_default_str();
  launch->add_option("--partition", l->slurm.partition, "Slurm: partition");
  launch->add_option("--sbatch-arg", l->slurm.sbatch_args, "Slurm: extra #SBATCH line (repeat)");
  out.push_back({launch, [l, jobs] {
                   RunDir run{l->run};
                   if (!l->local.gpus.empty() && jobs->count() == 0) {
                     l->local.jobs = static_cast<int>(l->local.gpus.size());
                   }
                   load_run(run);
                   if (!l->use_slurm) {
                     BTX_CHECK(!l->launch.submit && !l->launch.dry_run && !l->launch.wait,
                               "--submit, --dry-run and --wait need --slurm");
                     l->local.btx_binary = self_binary();
                     const auto r = launch_local(run, l->local);
                     if (!r.failed.empty()) {
                       fail("{} expert(s) failed: {} (logs in {})", r.failed.size(),
                            fmt::join(r.failed, ", "), experts_dir(run).string());
                     }
                     std::cout << fmt::format("launch: {} expert(s) trained\n", r.done.size());
                     return;
                   }
                   l->slurm.btx_binary = self_binary();
                   launch_slurm(run, l->slurm, l->launch, std::cout);
                 }});

  auto status_run = std::make_shared<std::string>();
  auto* status = app.add_subcommand("status", "Every stage and expert of a run: state, step, loss");
  status->add_option("--run", *status_run, "Run directory")->required();
  out.push_back(
      {status, [status_run] { std::cout << format_status(run_status(RunDir{*status_run})); }});
  return out;
}

}  // namespace btx::cli
