// Runs the experts of a run as independent jobs: a local pool of `btx train --expert` processes
// (at most J at a time, the machine's cores split between them, one progress view), or a Slurm
// job array, one task per expert, against the shared run directory. No scheduler of our own
// beyond the local pool: on a cluster, Slurm decides.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "btx/pipeline/run_dir.h"

namespace btx {

namespace fs = std::filesystem;

struct LaunchOptions {
  fs::path btx_binary;      // the btx executable the children run
  int jobs = 1;             // experts training at once
  int threads_per_job = 0;  // 0: the machine's cores / jobs (at least 1)
  double refresh_seconds = 5;
  std::vector<std::string> only;  // these experts (empty: every unfinished one)
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

}  // namespace btx
