// Experts launched elsewhere: the Slurm array script and a submission that waits for the array
// (against a fake sbatch/squeue), and the device options (the CPU, a missing GPU refused, one GPU
// per expert).
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>

#include <chrono>
#include <iostream>
#include <limits>
#include <thread>

#include "btx/io/safetensors.h"
#include "btx/run/experts.h"
#include "btx/run/launch.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "e2e/experts_fixture.h"
#include "e2e_util.h"
#include "tiny_corpus.h"

extern char** environ;

namespace btx {
namespace {

using testing::run_btx;

TEST_F(ExpertsTest, SlurmScriptHasTheArrayAndPerTaskCommand) {
  RunDir run = fresh_run("slurm");
  ASSERT_EQ(run_btx("branch --run " + run.root.string()).code, 0);
  auto r = run_btx("launch --run " + run.root.string() + " --slurm --dry-run --cpus-per-task 3");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("#SBATCH --array=0-2\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("#SBATCH --cpus-per-task=3\n"), std::string::npos);
  EXPECT_NE(r.output.find("EXPERTS=(code prose verse)"), std::string::npos);
  EXPECT_NE(r.output.find("train --run " + fs::absolute(run.root).string() +
                          " --expert \"$NAME\" --resume"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(slurm_script_path(run))) << "--dry-run writes nothing";
  // --submit without sbatch: the script is written, and the error says where it is.
  r = run_btx("launch --run " + run.root.string() + " --slurm --submit");
  if (r.output.find("sbatch is not installed") != std::string::npos) {
    EXPECT_NE(r.code, 0);
    EXPECT_TRUE(fs::exists(slurm_script_path(run)));
    EXPECT_NE(r.output.find(slurm_script_path(run).string()), std::string::npos);
  }
}

// A stand-in for Slurm on PATH: `sbatch --parsable SCRIPT` starts every task of the script's
// --array in the background (SLURM_ARRAY_TASK_ID set, output to the script's --output pattern)
// and prints the job id; `squeue --jobs ID` lists the tasks that have not exited, and calls a
// finished job an invalid id, as Slurm does once the job has aged out. Task
// $FAKE_SLURM_FAIL_TASK exits 3 without training, as a task killed by its time limit would.
fs::path write_fake_slurm(const fs::path& dir) {
  fs::create_directories(dir);
  testing::write_text(dir / "sbatch", R"(#!/bin/bash
set -eu
[ "$1" = --parsable ] || { echo "fake sbatch: expected --parsable" >&2; exit 2; }
script=$2 state=$(dirname "$0")
id=$(( $(cat "$state/next" 2>/dev/null || echo 700) + 1 )); echo $id > "$state/next"
range=$(sed -n 's/^#SBATCH --array=//p' "$script")
out=$(sed -n 's/^#SBATCH --output=//p' "$script")
echo $(( ${range#*-} + 1 )) > "$state/$id.tasks"
for i in $(seq ${range%-*} ${range#*-}); do
  log=${out//%x/btx-experts}; log=${log//%A/$id}; log=${log//%a/$i}
  if [ "$i" = "${FAKE_SLURM_FAIL_TASK:-}" ]; then cmd="exit 3"; else cmd="bash $script"; fi
  (rc=0; SLURM_ARRAY_JOB_ID=$id SLURM_ARRAY_TASK_ID=$i SLURM_CPUS_PER_TASK=1 bash -c "$cmd" ||
   rc=$?; echo $rc > "$state/$id.$i.exit") > "$log" 2>&1 < /dev/null &
done
echo "$id;fakecluster"
)");
  testing::write_text(dir / "squeue", R"(#!/bin/bash
state=$(dirname "$0") id=
while [ $# -gt 0 ]; do [ "$1" = --jobs ] && id=$2; shift; done
listed=0
if [ -f "$state/$id.tasks" ]; then
  for i in $(seq 0 $(( $(cat "$state/$id.tasks") - 1 ))); do
    [ -f "$state/$id.$i.exit" ] || { echo "${id}_$i"; listed=1; }
  done
fi
[ $listed = 1 ] || { echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; }
)");
  for (const char* tool : {"sbatch", "squeue"}) {
    fs::permissions(dir / tool, fs::perms::owner_all, fs::perm_options::add);
  }
  return dir;
}

TEST_F(ExpertsTest, SlurmSubmitWaitsForTheArrayAndNamesTheTaskThatEndedUnfinished) {
  RunDir run = fresh_run("slurm-wait"), serial = fresh_run("slurm-serial");
  for (auto* r : {&run, &serial}) ASSERT_EQ(run_btx("branch --run " + r->root.string()).code, 0);
  const fs::path slurm = write_fake_slurm(dir_->path() / "fake-slurm");
  const std::string env = "PATH=" + slurm.string() + ":$PATH";
  const std::string launch =
      "launch --run " + run.root.string() + " --slurm --submit --wait --poll-seconds 0.2";

  // Task 1 (prose) ends without training: the wait ends with an error naming it and its log,
  // once the other tasks have left the queue, instead of waiting for ever.
  auto r = run_btx(launch, env + " FAKE_SLURM_FAIL_TASK=1");
  ASSERT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("submitted Slurm job 701: 3 task(s)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Slurm job 701 has ended but 1 of 3 expert(s) did not finish"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("prose (array task 1): log " + slurm_task_log(run, "701", 1).string()),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("code (array task"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(slurm_task_log(run, "701", 0)));
  for (const char* done : {"code", "verse"}) {
    const auto s = load_train_state(expert_dir(run, done));
    ASSERT_TRUE(s && s->done) << done;
  }
  EXPECT_FALSE(load_train_state(expert_dir(run, "prose")).has_value() &&
               load_train_state(expert_dir(run, "prose"))->done);

  // Submitted again, the array finishes prose (the others' tasks find them done) and the wait
  // returns. Each task trained the expert its index names: prose equals one trained alone
  // with the task's threads.
  r = run_btx(launch, env);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("submitted Slurm job 702"), std::string::npos) << r.output;
  r = run_btx("train --run " + serial.root.string() + " --expert prose --threads 1",
              "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(read_file(expert_dir(run, "prose") / "model.safetensors"),
            read_file(expert_dir(serial, "prose") / "model.safetensors"));

  // sbatch printing something other than a job id is an error quoting it.
  EXPECT_EQ(parse_sbatch_job_id("1234;cluster\n"), "1234");
  EXPECT_EQ(parse_sbatch_job_id(" 99\n"), "99");
  EXPECT_THROW(parse_sbatch_job_id("sbatch: error: Batch job submission failed"), Error);
}

// --device (or BTX_DEVICE): cpu trains exactly what the default does; a device that is not
// there is refused before anything is written.
TEST_F(ExpertsTest, DeviceOptionTrainsOnTheCpuAndRefusesAMissingGpu) {
  RunDir plain = fresh_run("dev-plain"), cpu = fresh_run("dev-cpu");
  for (auto* r : {&plain, &cpu}) ASSERT_EQ(run_btx("branch --run " + r->root.string()).code, 0);
  const std::string env = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1";
  auto r = run_btx("train --run " + plain.root.string() + " --expert code --threads 1", env);
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_btx("train --run " + cpu.root.string() + " --expert code --threads 1 --device cpu", env);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(read_file(expert_dir(plain, "code") / "model.safetensors"),
            read_file(expert_dir(cpu, "code") / "model.safetensors"));

  r = run_btx("train --run " + cpu.root.string() + " --expert prose", "BTX_DEVICE=gpu");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--device (or BTX_DEVICE) 'gpu' is not a device: use cpu, cuda or "
                          "cuda:N"),
            std::string::npos)
      << r.output;
  if (!torch::cuda::is_available()) {
    r = run_btx("train --run " + cpu.root.string() + " --expert prose --device cuda:0");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.output.find("'cuda:0': no GPU is usable here"), std::string::npos) << r.output;
  }
  EXPECT_FALSE(fs::exists(expert_dir(cpu, "prose") / "metrics.jsonl"));
  // --device is an option of btx itself, accepted after the subcommand too; an unknown option
  // there still points to the subcommand's help.
  r = run_btx("train --run " + cpu.root.string() + " --expert prose --bogus");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("(see `btx train --help`)"), std::string::npos) << r.output;
  // An unknown command is named, with or without --help, after btx's own options too.
  for (const std::string args : {"nosuch", "nosuch --help", "--device cpu nosuch"}) {
    r = run_btx(args);
    EXPECT_EQ(r.code, 1) << args;
    EXPECT_NE(r.output.find("btx: error: unknown command 'nosuch' (commands: corpus, cluster,"),
              std::string::npos)
        << args << ": " << r.output;
  }
}

// launch --gpus: each expert gets one GPU of the list as its only visible one (cuda:0), and
// no GPU runs two experts at once. A stand-in for btx records what each expert was given and
// fails if its GPU is already busy.
TEST_F(ExpertsTest, LaunchGivesEachExpertItsOwnGpu) {
  RunDir run = fresh_run("gpus");
  ASSERT_EQ(run_btx("branch --run " + run.root.string()).code, 0);
  const fs::path seen = dir_->path() / "gpus-seen";
  fs::create_directories(seen);
  const fs::path fake = dir_->path() / "fake-btx";
  testing::write_text(fake,
                      "#!/bin/bash\n"
                      "# argv: train --run RUN --expert NAME --resume --threads 1\n"
                      "busy=" +
                          seen.string() +
                          "/gpu$CUDA_VISIBLE_DEVICES.busy\n"
                          "(set -o noclobber; : > \"$busy\") || exit 9\n"
                          "sleep 0.5\n"
                          "echo \"$CUDA_VISIBLE_DEVICES $BTX_DEVICE\" > " +
                          seen.string() +
                          "/$5\n"
                          "rm \"$busy\"\n");
  fs::permissions(fake, fs::perms::owner_all, fs::perm_options::add);
  LaunchOptions o;
  o.btx_binary = fake;
  o.jobs = 3;
  o.gpus = {5, 3};  // three experts, two GPUs: the third waits for a free one
  o.refresh_seconds = 100;
  const LaunchResult r = launch_local(run, o);
  EXPECT_EQ(r.done.size(), 3u);
  EXPECT_TRUE(r.failed.empty()) << "a GPU ran two experts at once";
  for (const char* e : {"code", "prose", "verse"}) {
    const std::string got = read_file(seen / e);
    EXPECT_TRUE(got == "5 cuda:0\n" || got == "3 cuda:0\n") << e << ": " << got;
  }
  o.gpus = {1, 1};
  EXPECT_THROW(launch_local(run, o), Error);
}

}  // namespace
}  // namespace btx
