// Data parallel training on loopback: 2 processes stay bitwise identical and match one process
// on the combined batch; a WORLD_SIZE mismatch and an unreachable rendezvous fail clearly and
// write nothing. This file has its own main(): started as `<binary> --worker ...` it is one rank.
#include "btx/train/distributed.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <future>
#include <iostream>
#include <sstream>

#include "btx/run/run_dir.h"
#include "btx/train/checkpoint.h"
#include "btx/train/trainer.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/subprocess.h"
#include "tiny_run.h"

namespace btx {
namespace {

using testing::prepare_tiny_run;
using testing::tiny_job;

// A port nothing listens on right now (the kernel's pick for a socket bound to port 0).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error("cannot pick a free port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::vector<torch::Tensor> parameters_of(const CausalLM& model) {
  std::vector<torch::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
  return out;
}

// One rank (`--worker RUN OUT PARAMS STOP_AFTER RESUME`): trains tiny_job with the context from
// the environment and saves its final parameters to PARAMS.<RANK>.
int worker_main(char** argv) {
  try {
    const DistributedContext ctx = init_distributed_from_env(std::chrono::seconds(20));
    TrainJob job = tiny_job(argv[2], argv[3]);
    job.dist = &ctx;
    job.stop_after = std::stoll(argv[5]);
    job.resume = std::string(argv[6]) == "1";
    const TrainResult r = train(job);
    if (r.model.is_empty()) throw Error("training did not run");
    torch::save(parameters_of(r.model), fmt::format("{}.{}", argv[4], ctx.rank));
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "worker error: " << e.what() << "\n";
    return 1;
  }
}

using Env = std::map<std::string, std::string>;

// Starts one process per env (inheriting this one's environment plus those variables) and waits
// for all of them.
std::vector<RunResult> run_all(const std::vector<std::string>& argv, const std::vector<Env>& envs) {
  std::vector<std::future<RunResult>> running;
  for (const auto& env : envs) {
    RunOptions o;
    o.inherit_env = true;
    o.env = env;
    running.push_back(std::async(std::launch::async, [argv, o] { return run_process(argv, o); }));
  }
  std::vector<RunResult> out;
  for (auto& f : running) out.push_back(f.get());
  return out;
}

Env rank_env(int rank, int world_size, int port, const std::string& timeout_s = "20") {
  return {{"RANK", std::to_string(rank)},
          {"WORLD_SIZE", std::to_string(world_size)},
          {"MASTER_ADDR", "127.0.0.1"},
          {"MASTER_PORT", std::to_string(port)},
          {"BTX_DIST_TIMEOUT", timeout_s}};
}

// Two ranks of worker_main on loopback; `params` gets the suffixes .0 and .1.
std::vector<RunResult> train_two_ranks(const fs::path& run_root, const fs::path& out_dir,
                                       const fs::path& params, int64_t stop_after, bool resume) {
  const int port = free_port();
  return run_all(
      {fs::read_symlink("/proc/self/exe").string(), "--worker", run_root.string(), out_dir.string(),
       params.string(), std::to_string(stop_after), resume ? "1" : "0"},
      {rank_env(0, 2, port), rank_env(1, 2, port)});
}

std::vector<torch::Tensor> load_parameters(const fs::path& file) {
  std::vector<torch::Tensor> out;
  torch::load(out, file.string());
  return out;
}

double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-12);
}

std::string outputs(const std::vector<RunResult>& rs) {
  std::string s;
  for (size_t i = 0; i < rs.size(); ++i) {
    s += fmt::format("--- process {} (exit {}):\n{}{}", i, rs[i].exit_code, rs[i].out, rs[i].err);
  }
  return s;
}

TEST(DataParallel, TwoRanksStayIdenticalMatchOneProcessAndResumeExactly) {
  testing::TempDir dir("btx-dist");
  const fs::path run_root = dir / "run";
  prepare_tiny_run(dir.path(), run_root);

  auto rs = train_two_ranks(run_root, dir / "dp", dir / "params", 0, false);
  ASSERT_EQ(rs[0].exit_code, 0) << outputs(rs);
  ASSERT_EQ(rs[1].exit_code, 0) << outputs(rs);
  // Only rank 0 logs.
  EXPECT_NE(rs[0].out.find("data parallel: 2 ranks"), std::string::npos) << outputs(rs);
  EXPECT_EQ(rs[1].out.find("step"), std::string::npos) << outputs(rs);

  const auto p0 = load_parameters(dir / "params.0");
  const auto p1 = load_parameters(dir / "params.1");
  ASSERT_EQ(p0.size(), p1.size());
  for (size_t i = 0; i < p0.size(); ++i) EXPECT_TRUE(torch::equal(p0[i], p1[i])) << "tensor " << i;

  // Rank 0's checkpoint holds those parameters and is the finished run.
  const auto state = load_train_state(dir / "dp");
  ASSERT_TRUE(state);
  EXPECT_TRUE(state->done);
  EXPECT_EQ(state->step, 6);
  const auto saved = parameters_of(load_model(dir / "dp"));
  ASSERT_EQ(saved.size(), p0.size());
  for (size_t i = 0; i < p0.size(); ++i) EXPECT_TRUE(torch::equal(saved[i], p0[i])) << i;

  // One process on the combined batch (no context: the default is one process).
  const TrainResult single = train(tiny_job(run_root, dir / "single"));
  ASSERT_TRUE(single.finished);
  const auto ps = parameters_of(single.model);
  ASSERT_EQ(ps.size(), p0.size());
  for (size_t i = 0; i < ps.size(); ++i) {
    EXPECT_LT(relative_difference(p0[i], ps[i]), 1e-5) << "tensor " << i;
  }
  // The logged (global mean) losses agree too.
  const auto dp_log = read_file(dir / "dp" / "metrics.jsonl");
  const auto single_log = read_file(dir / "single" / "metrics.jsonl");
  std::istringstream a(dp_log), b(single_log);
  std::string la, lb;
  int lines = 0;
  while (std::getline(a, la) && std::getline(b, lb)) {
    const auto ja = nlohmann::json::parse(la), jb = nlohmann::json::parse(lb);
    if (!jb.contains("loss")) continue;
    EXPECT_NEAR(ja.at("loss").get<double>(), jb.at("loss").get<double>(), 1e-5) << la;
    ++lines;
  }
  EXPECT_EQ(lines, 3);

  // Two ranks stopped after step 4 and resumed (both from rank 0's checkpoint) end bitwise where
  // the uninterrupted pair did.
  rs = train_two_ranks(run_root, dir / "dp2", dir / "stopped", 4, false);
  ASSERT_TRUE(rs[0].exit_code == 0 && rs[1].exit_code == 0) << outputs(rs);
  EXPECT_EQ(load_train_state(dir / "dp2")->step, 4);
  rs = train_two_ranks(run_root, dir / "dp2", dir / "resumed", 0, true);
  ASSERT_TRUE(rs[0].exit_code == 0 && rs[1].exit_code == 0) << outputs(rs);
  const auto r0 = load_parameters(dir / "resumed.0");
  const auto r1 = load_parameters(dir / "resumed.1");
  ASSERT_EQ(r0.size(), p0.size());
  for (size_t i = 0; i < p0.size(); ++i) {
    EXPECT_TRUE(torch::equal(r0[i], p0[i]) && torch::equal(r1[i], p0[i])) << "tensor " << i;
  }
  EXPECT_EQ(read_file(dir / "dp2" / "model.safetensors"),
            read_file(dir / "dp" / "model.safetensors"));
}

TEST(DataParallel, MismatchedWorldSizeIsAClearErrorAndWritesNothing) {
  testing::TempDir dir("btx-dist");
  // An existing run folder that must stay as it is.
  testing::write_text(dir / "run" / "config.toml", "sentinel\n");
  const int port = free_port();
  auto rs = run_all({BTX_BINARY, "seed", "--run", (dir / "run").string()},
                    {rank_env(0, 2, port), rank_env(1, 3, port)});
  for (const auto& r : rs) {
    EXPECT_NE(r.exit_code, 0) << outputs(rs);
    EXPECT_NE(r.err.find("rank 1 has WORLD_SIZE=3 but rank 0 has WORLD_SIZE=2"), std::string::npos)
        << outputs(rs);
  }
  EXPECT_EQ(read_file(dir / "run" / "config.toml"), "sentinel\n");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir / "run"), fs::directory_iterator()), 1);
}

TEST(DataParallel, UnreachableRendezvousFailsWithinItsTimeout) {
  testing::TempDir dir("btx-dist");
  const int port = free_port();  // nobody serves it: rank 0 never starts
  auto rs =
      run_all({BTX_BINARY, "seed", "--run", (dir / "run").string()}, {rank_env(1, 2, port, "2")});
  EXPECT_NE(rs[0].exit_code, 0) << outputs(rs);
  EXPECT_NE(rs[0].err.find(fmt::format(
                "rank 1 cannot reach the rendezvous at MASTER_ADDR:MASTER_PORT=127.0.0.1:{} "
                "within 2 s (BTX_DIST_TIMEOUT)",
                port)),
            std::string::npos)
      << outputs(rs);
  EXPECT_EQ(std::count(rs[0].err.begin(), rs[0].err.end(), '\n'), 1) << rs[0].err;
  EXPECT_FALSE(fs::exists(dir / "run"));
}

// Sets environment variables for one scope and restores what was there.
struct ScopedEnv {
  explicit ScopedEnv(const Env& vars) {
    for (const auto& [k, v] : vars) {
      const char* old = std::getenv(k.c_str());
      saved[k] = old ? std::optional<std::string>(old) : std::nullopt;
      if (v.empty()) {
        ::unsetenv(k.c_str());
      } else {
        ::setenv(k.c_str(), v.c_str(), 1);
      }
    }
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved) {
      if (v) {
        ::setenv(k.c_str(), v->c_str(), 1);
      } else {
        ::unsetenv(k.c_str());
      }
    }
  }
  std::map<std::string, std::optional<std::string>> saved;
};

std::string init_error(const Env& vars) {
  ScopedEnv e(vars);
  try {
    init_distributed_from_env(std::chrono::seconds(1));
  } catch (const Error& err) {
    return err.what();
  }
  return "(no error)";
}

TEST(DataParallel, EnvironmentErrorsNameTheVariable) {
  const Env none{{"WORLD_SIZE", ""},          {"RANK", ""},         {"MASTER_ADDR", ""},
                 {"MASTER_PORT", ""},         {"SLURM_NTASKS", ""}, {"SLURM_PROCID", ""},
                 {"SLURM_STEP_NUM_TASKS", ""}};
  {
    ScopedEnv e(none);
    EXPECT_FALSE(init_distributed_from_env(std::chrono::seconds(1)).enabled());
  }
  auto with = [&](Env extra) {
    Env v = none;
    for (auto& [k, x] : extra) v[k] = x;
    return v;
  };
  EXPECT_NE(init_error(with({{"WORLD_SIZE", "2"}})).find("RANK is not"), std::string::npos);
  EXPECT_NE(init_error(with({{"WORLD_SIZE", "two"}})).find("WORLD_SIZE='two' is not an integer"),
            std::string::npos);
  EXPECT_NE(init_error(with({{"WORLD_SIZE", "2"}, {"RANK", "2"}})).find("RANK=2 is out of range"),
            std::string::npos);
  EXPECT_NE(init_error(with({{"WORLD_SIZE", "2"}, {"RANK", "1"}})).find("needs MASTER_ADDR"),
            std::string::npos);
  EXPECT_NE(init_error(with({{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_ADDR", "127.0.0.1"}}))
                .find("needs MASTER_PORT"),
            std::string::npos);
  // srun: SLURM_PROCID / SLURM_NTASKS stand in for RANK / WORLD_SIZE inside a step only.
  EXPECT_NE(init_error(
                with({{"SLURM_NTASKS", "2"}, {"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "2"}}))
                .find("SLURM_NTASKS=2 needs MASTER_ADDR"),
            std::string::npos);
  EXPECT_EQ(init_error(with({{"SLURM_NTASKS", "2"}, {"SLURM_PROCID", "0"}})), "(no error)");
  {
    ScopedEnv e(Env{{"BTX_DIST_TIMEOUT", "soon"}});
    EXPECT_THROW(dist_timeout_from_env(std::chrono::seconds(60)), Error);
  }
}

TEST(DataParallel, BatchNotDivisibleByWorldSizeIsAnError) {
  DistributedContext three;
  three.world_size = 3;  // never reaches a collective: the check comes first
  TrainJob job;
  job.train.batch_size = 8;
  job.dist = &three;
  try {
    train(job);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("batch_size 8 is not divisible by WORLD_SIZE 3"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace btx

int main(int argc, char** argv) {
  if (argc == 7 && std::string(argv[1]) == "--worker") return btx::worker_main(argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
