// Runs the experts of a run as independent jobs: a local pool of `btx train --expert` processes
// (at most J at a time, the machine's cores split between them, one progress view), or a Slurm
// job array, one task per expert, against the shared run directory. No scheduler of our own
// beyond the local pool: on a cluster, Slurm decides.
#pragma once

#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "btx/run/run_dir.h"

namespace btx {

namespace fs = std::filesystem;

struct LaunchOptions {
  fs::path btx_binary;      // the btx executable the children run
  int jobs = 1;             // experts training at once
  int threads_per_job = 0;  // 0: the machine's cores / jobs (at least 1)
  double refresh_seconds = 5;
  std::vector<std::string> only;  // these experts (empty: every unfinished one)
  // GPUs to spread the experts over, one expert per GPU at a time (CUDA_VISIBLE_DEVICES=g and
  // BTX_DEVICE=cuda:0 in its environment); empty: the CPU. Caps the experts at once to their
  // number.
  std::vector<int> gpus;
};

struct LaunchResult {
  std::vector<std::string> done, failed;
};

// Trains every unfinished expert (resuming checkpoints) in child processes; their output goes
// to experts/<name>.log. A failed expert does not stop the others.
LaunchResult launch_local(const RunDir& run, const LaunchOptions& o);

struct SlurmOptions {
  fs::path btx_binary;
  int cpus_per_task = 4;
  std::string time = "24:00:00";
  std::string partition;                 // empty: the cluster's default
  std::vector<std::string> sbatch_args;  // extra "#SBATCH" lines, e.g. "--gres=gpu:1"
};

// A job-array script: task i trains expert i (`btx train --expert NAME --resume`).
std::string slurm_script(const RunDir& run, const std::vector<std::string>& experts,
                         const SlurmOptions& o);
fs::path slurm_script_path(const RunDir& run);

// The job id in what `sbatch --parsable` printed: "1234" or "1234;cluster". Anything else is
// a btx::Error quoting it.
std::string parse_sbatch_job_id(const std::string& out);

// Submits the script with `sbatch --parsable`; returns the job id.
std::string submit_slurm(const fs::path& script);

// Task i's log, as the script's --output pattern names it: slurm/btx-experts-<job>_<i>.out.
fs::path slurm_task_log(const RunDir& run, const std::string& job, size_t task);

// Waits until every expert of the array (task i trains names[i]) has a finished checkpoint,
// printing the run's status when it changes. Every `poll_seconds` it reads the checkpoints and
// asks `squeue` which of the job's tasks are still queued or running; once none is and some
// expert is unfinished, that is a btx::Error naming each unfinished expert and its task's log
// (a task that failed or ran out of time), instead of waiting for ever.
void wait_for_slurm(const RunDir& run, const std::vector<std::string>& names,
                    const std::string& job, double poll_seconds);

struct SlurmLaunch {
  bool submit = false;   // submit the script with sbatch
  bool dry_run = false;  // print the script to `out`, write nothing
  bool wait = false;     // after submitting: wait_for_slurm()
  double poll_seconds = 30;
};

// `btx launch --slurm`: writes the job-array script of every expert of the run (executable,
// slurm_script_path()), then as `l` says submits it and waits; what it did goes to `out`. A run
// without experts, or sbatch/squeue missing where they are needed, is an error saying what to do
// instead, before anything is written.
void launch_slurm(const RunDir& run, const SlurmOptions& o, const SlurmLaunch& l,
                  std::ostream& out);

// `btx launch`'s arguments (util/args.h): the local pool's options, or with --slurm the job
// array's.
struct LaunchArgs {
  std::string run;
  LaunchOptions local;
  bool use_slurm = false;
  SlurmOptions slurm;
  SlurmLaunch launch;
  template <typename V>
  void visit(V& v) {
    v.option("--run", run, "Run directory");
    v.option("--jobs,-j", local.jobs, "Experts training at once (with --gpus: one per GPU)");
    v.option("--threads-per-job", local.threads_per_job,
             "BLAS threads per expert (0: cores / jobs; LibTorch keeps 1)");
    v.option("--only", local.only, "Only these experts");
    v.option("--gpus", local.gpus,
             "GPU indices (e.g. 0,1,2,3): each expert trains on one of them, one expert per GPU at "
             "a time (--jobs, when given, caps them)");
    v.flag("--slurm", use_slurm, "Write a Slurm job-array script instead");
    v.flag("--submit", launch.submit, "With --slurm: submit it with sbatch");
    v.flag("--dry-run", launch.dry_run, "With --slurm: print the script, write nothing");
    v.flag("--wait", launch.wait,
           "With --slurm --submit: wait until every expert has finished (`btx run` does), "
           "showing their progress; fails naming the experts whose tasks ended unfinished");
    v.option("--poll-seconds", launch.poll_seconds,
             "With --wait: seconds between looks at the checkpoints and squeue");
    v.option("--cpus-per-task", slurm.cpus_per_task, "Slurm: CPUs per expert");
    v.option("--time", slurm.time, "Slurm: time limit per task");
    v.option("--partition", slurm.partition, "Slurm: partition");
    v.repeated("--sbatch-arg", slurm.sbatch_args, "Slurm: extra #SBATCH line (repeat)");
  }
};

}  // namespace btx
