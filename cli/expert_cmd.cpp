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

  auto b = std::make_shared<BranchArgs>();
  auto* branch = app.add_subcommand(
      "branch",
      "Branch the experts of the run's config from the finished seed (exact copies), "
      "or --add one later, initialised from the posterior-weighted average of the "
      "trained experts (BTM)");
  CliArgs branch_options(branch);
  b->visit(branch_options);
  branch_options["--run"]->required();
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

  auto t = std::make_shared<TrainExpertArgs>();
  auto* train = app.add_subcommand("train", "Train one expert from its branch point");
  CliArgs train_options(train);
  t->visit(train_options);
  train_options["--run"]->required();
  train_options["--expert"]->required();
  out.push_back({train, [t] {
                   const Run run = Run::open(t->run);
                   distributed_from_env();  // data parallel when WORLD_SIZE > 1
                   train_expert(run, t->expert, t->resume, t->stop_after, t->threads);
                 }});

  auto l = std::make_shared<LaunchArgs>();
  auto* launch = app.add_subcommand(
      "launch", "Train every unfinished expert: a local pool of processes, or a Slurm job array");
  CliArgs launch_options(launch);
  l->visit(launch_options);
  launch_options["--run"]->required();
  auto* jobs = launch_options["--jobs"]->capture_default_str();
  launch_options["--poll-seconds"]->check(CLI::PositiveNumber)->capture_default_str();
  launch_options["--cpus-per-task"]->capture_default_str();
  launch_options["--time"]->capture_default_str();
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
