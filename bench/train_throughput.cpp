// Training throughput of one small dense model in btx and in PyTorch's Python front end (the same
// LibTorch underneath), side by side in one run, with the ratio: the same model, batch and step
// (forward, cross-entropy, backward, clip, AdamW). Prints a table, with a row for btx under bf16
// autocast on the CPU (--precision bf16).
//   train_throughput [--hidden 256 --layers 4 --heads 4 --kv-heads 0 --vocab 4096 --seq 256
//                     --batch 8 --steps 10 --threads 0
//                     --keep-freed 2]   (allocator.h: 0 glibc's defaults, 1 heap up to 32 MB,
//                                        2 btx's: every block from the heap)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "bench_model.h"
#include "btx/model/llama.h"
#include "btx/train/adamw.h"
#include "btx/util/allocator.h"
#include "btx/util/device.h"

namespace {
struct Args {
  int64_t hidden = 256, layers = 4, heads = 4, vocab = 4096, seq = 256, batch = 8, steps = 10,
          warmup = 2, threads = 0, keep_freed = 2;
  int64_t kv_heads = 0;  // grouped-query key/value heads (0: as many as heads)
};

double btx_tokens_per_s(const Args& a, bool bf16, double* step_ms, int64_t* params) {
  if (a.threads > 0) torch::set_num_threads(static_cast<int>(a.threads));
  torch::manual_seed(0);
  btx::ModelConfig c = bench_model_config(a.vocab, a.hidden, a.layers, a.heads);
  if (a.kv_heads > 0) c.num_key_value_heads = a.kv_heads;
  c.max_position_embeddings = a.seq;
  btx::CausalLM model(c);
  *params = model->num_params();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
  btx::AdamW opt(named, btx::AdamWOptions{0.9, 0.95, 1e-8, 0.1});
  auto batch = torch::randint(0, a.vocab, {a.batch, a.seq + 1}, torch::kLong);
  auto step = [&] {
    opt.zero_grad();
    torch::Tensor loss;
    {
      btx::AutocastGuard autocast(torch::kCPU, bf16);
      loss = btx::lm_loss(model, batch);
    }
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    opt.step(1e-3);
    return loss.item<double>();
  };
  for (int64_t i = 0; i < a.warmup; ++i) step();
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < a.steps; ++i) step();
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  *step_ms = 1000 * dt / a.steps;
  return a.batch * a.seq * a.steps / dt;
}

// glibc's settings that btx's main makes with mallopt (util/allocator.h, FreedMemory::kAlways),
// given to Python through glibc's environment, so both keep freed memory alike.
constexpr const char* kBtxMallocEnv =
    "MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_MMAP_MAX_=0";

std::string python_cmd(const Args& a, const std::string& env = "") {
  std::string script = std::string(BTX_SOURCE_DIR) + "/bench/py/train_throughput.py";
  return (env.empty() ? "" : "env " + env + " ") + "/usr/bin/python3 " + script + " --hidden " +
         std::to_string(a.hidden) + " --layers " + std::to_string(a.layers) + " --heads " +
         std::to_string(a.heads) + " --vocab " + std::to_string(a.vocab) + " --seq " +
         std::to_string(a.seq) + " --batch " + std::to_string(a.batch) + " --steps " +
         std::to_string(a.steps) + " --warmup " + std::to_string(a.warmup) + " --threads " +
         std::to_string(a.threads) + " --kv-heads " + std::to_string(a.kv_heads);
}
}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    int64_t v = std::atoll(argv[i + 1]);
    if (k == "--hidden")
      a.hidden = v;
    else if (k == "--layers")
      a.layers = v;
    else if (k == "--heads")
      a.heads = v;
    else if (k == "--vocab")
      a.vocab = v;
    else if (k == "--seq")
      a.seq = v;
    else if (k == "--batch")
      a.batch = v;
    else if (k == "--steps")
      a.steps = v;
    else if (k == "--warmup")
      a.warmup = v;
    else if (k == "--threads")
      a.threads = v;
    else if (k == "--kv-heads")
      a.kv_heads = v;
    else if (k == "--keep-freed")
      a.keep_freed = v;
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  // As btx's main does (util/allocator.h) with 2; 0 leaves glibc's defaults untouched.
  if (a.keep_freed < 0 || a.keep_freed > 2) {
    std::cerr << "--keep-freed " << a.keep_freed << ": expected 0, 1 or 2\n";
    return 2;
  }
  btx::keep_freed_memory(static_cast<btx::FreedMemory>(a.keep_freed));
  // Python first (with glibc's defaults, then with btx's allocator settings), btx second, then
  // Python again in the reverse order: the mean of the two runs of each offsets the drift of a
  // shared, noisy machine.
  auto run_python = [&](const std::string& env) {
    FILE* pipe = popen(python_cmd(a, env).c_str(), "r");
    if (!pipe) return nlohmann::json();
    std::string out;
    char buf[4096];
    while (fgets(buf, sizeof buf, pipe)) out += buf;
    if (pclose(pipe) != 0 || out.empty()) return nlohmann::json();
    return nlohmann::json::parse(out);
  };
  auto plain1 = run_python("");
  auto fair1 = run_python(kBtxMallocEnv);
  double btx_ms = 0;
  int64_t params = 0;
  const double btx_tps = btx_tokens_per_s(a, false, &btx_ms, &params);
  double bf16_ms = 0;
  const double bf16_tps = btx_tokens_per_s(a, true, &bf16_ms, &params);
  auto fair2 = run_python(kBtxMallocEnv);
  auto plain2 = run_python("");
  for (const auto* run : {&plain1, &fair1, &fair2, &plain2}) {
    if (run->is_null()) {
      std::cerr << "python run failed (needs Debian's python3-torch): " << python_cmd(a) << "\n";
      return 1;
    }
  }
  auto mean_of = [](const nlohmann::json& x, const nlohmann::json& y, const char* key) {
    return (x[key].get<double>() + y[key].get<double>()) / 2;
  };
  const double plain_tps = mean_of(plain1, plain2, "tokens_per_s");
  const double plain_ms = mean_of(plain1, plain2, "step_ms");
  const double fair_tps = mean_of(fair1, fair2, "tokens_per_s");
  const double fair_ms = mean_of(fair1, fair2, "step_ms");
  std::printf(
      "model: d=%lld L=%lld H=%lld V=%lld T=%lld B=%lld, %lld params; %lld timed steps; "
      "intra-op threads: btx %d, python %d; allocator mode (--keep-freed): %lld\n",
      (long long)a.hidden, (long long)a.layers, (long long)a.heads, (long long)a.vocab,
      (long long)a.seq, (long long)a.batch, (long long)params, (long long)a.steps,
      torch::get_num_threads(), plain1["threads"].get<int>(), (long long)a.keep_freed);
  std::printf("| impl | step ms | tokens/s |\n|---|---:|---:|\n");
  std::printf("| btx (C++) | %.1f | %.0f |\n", btx_ms, btx_tps);
  std::printf("| python eager, btx's allocator settings | %.1f | %.0f |\n", fair_ms, fair_tps);
  std::printf("| python eager, glibc's defaults | %.1f | %.0f |\n", plain_ms, plain_tps);
  std::printf("| btx bf16 autocast | %.1f | %.0f |\n", bf16_ms, bf16_tps);
  std::printf(
      "ratio btx / python tokens/s, like for like (python given btx's allocator settings, %s): "
      "%.2f; against python with glibc's defaults: %.2f; btx bf16 / fp32: %.2f\n",
      kBtxMallocEnv, btx_tps / fair_tps, btx_tps / plain_tps, bf16_tps / btx_tps);
  return 0;
}
