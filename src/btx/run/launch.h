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

}  // namespace btx
