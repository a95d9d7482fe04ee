// Peak memory of merging N experts: average_checkpoints (streams one tensor at a time) next to a
// non-streaming reference (load all N with load_safetensors, then sum), each run in its own forked
// child and measured as that child's peak RSS (wait4's ru_maxrss), plus a child that only has
// libtorch loaded (the baseline), so each figure reads as baseline + merge. Prints a table.
//   merge_memory [--experts 8 --hidden 512 --layers 7 --vocab 8192 --dir /tmp/btx-merge-memory]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "bench_model.h"
#include "btx/io/safetensors.h"
#include "btx/merge/param_average.h"
#include "btx/model/llama.h"
#include "btx/train/checkpoint.h"

namespace {

namespace fs = std::filesystem;

struct Args {
  int64_t experts = 8, hidden = 512, layers = 7, vocab = 8192;
  std::string dir = "/tmp/btx-merge-memory";
};

struct ChildResult {
  double peak_mb = 0;  // peak resident set of the child
  double wall_s = 0;
};

// Runs `body` in a forked child; the parent has run no torch op, so the child starts small.
template <typename F>
ChildResult in_child(const char* what, F body) {
  std::cout.flush();
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int rc = 0;
    try {
      body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", what, e.what());
      rc = 1;
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  int status = 0;
  struct rusage ru {};
  if (::wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(std::string(what) + " failed");
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {ru.ru_maxrss / 1024.0, wall};  // ru_maxrss is in KiB on Linux
}

fs::path expert_path(const Args& a, int64_t i) {
  return fs::path(a.dir) / ("expert" + std::to_string(i));
}

void make_checkpoints(const Args& a) {
  torch::manual_seed(0);
  btx::CausalLM model(bench_model_config(a.vocab, a.hidden, a.layers, a.hidden / 64));
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < a.experts; ++i) {  // experts: the seed plus a little noise each
    for (auto& p : model->parameters()) p.add_(torch::randn_like(p), 0.01);
    btx::save_checkpoint(expert_path(a, i), {&model, nullptr, nullptr, {}});
  }
}

void streaming_average(const Args& a) {
  std::vector<btx::WeightedCheckpoint> inputs;
  for (int64_t i = 0; i < a.experts; ++i) inputs.push_back({expert_path(a, i), 1.0 + i});
  btx::average_checkpoints(inputs, fs::path(a.dir) / "avg_streaming");
}

// The non-streaming way: every checkpoint in memory at once, then a float64 sum per tensor.
void load_all_average(const Args& a) {
  std::vector<btx::TensorMap> all;
  double total = 0;
  for (int64_t i = 0; i < a.experts; ++i) {
    all.push_back(btx::load_safetensors(expert_path(a, i) / "model.safetensors").tensors);
    total += 1.0 + i;
  }
  btx::TensorMap out;
  for (const auto& [name, t] : all.front()) {
    auto acc = torch::zeros(t.sizes(), torch::kFloat64);
    for (int64_t i = 0; i < a.experts; ++i) {
      acc.add_(all[i].at(name).to(torch::kFloat64), (1.0 + i) / total);
    }
    out[name] = acc.to(t.scalar_type());
  }
  btx::save_safetensors(fs::path(a.dir) / "avg_load_all" / "model.safetensors", out);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--experts") {
      a.experts = std::atoll(v.c_str());
    } else if (k == "--hidden") {
      a.hidden = std::atoll(v.c_str());
    } else if (k == "--layers") {
      a.layers = std::atoll(v.c_str());
    } else if (k == "--vocab") {
      a.vocab = std::atoll(v.c_str());
    } else if (k == "--dir") {
      a.dir = v;
    } else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  try {
    fs::remove_all(a.dir);
    const ChildResult base =
        in_child("baseline", [] { (void)torch::ones({1}).sum().item<float>(); });
    in_child("making checkpoints", [&] { make_checkpoints(a); });
    const ChildResult stream = in_child("average_checkpoints", [&] { streaming_average(a); });
    const ChildResult load_all = in_child("load all + sum", [&] { load_all_average(a); });

    const fs::path file = expert_path(a, 0) / "model.safetensors";
    const double ckpt_mb = fs::file_size(file) / 1048576.0;
    uint64_t largest = 0;
    int64_t tensors = 0;
    for (const auto& [name, info] : btx::read_safetensors_header(file)) {
      largest = std::max(largest, info.end - info.begin);
      ++tensors;
    }
    const bool same = btx::load_safetensors(fs::path(a.dir) / "avg_streaming" / "model.safetensors")
                          .tensors.size() == static_cast<size_t>(tensors);
    fs::remove_all(a.dir);

    std::printf("merge_memory: %lld experts, hidden %lld, layers %lld, vocab %lld\n",
                static_cast<long long>(a.experts), static_cast<long long>(a.hidden),
                static_cast<long long>(a.layers), static_cast<long long>(a.vocab));
    std::printf("one checkpoint: %.1f MiB (%lld tensors), largest tensor: %.1f MiB\n\n", ckpt_mb,
                static_cast<long long>(tensors), largest / 1048576.0);
    std::printf(
        "| child | peak RSS MiB | minus baseline MiB | peak / checkpoint | (peak - base) / "
        "checkpoint | wall s |\n");
    std::printf("|---|---:|---:|---:|---:|---:|\n");
    auto row = [&](const char* what, const ChildResult& r) {
      std::printf("| %s | %.0f | %.0f | %.2f | %.2f | %.1f |\n", what, r.peak_mb,
                  r.peak_mb - base.peak_mb, r.peak_mb / ckpt_mb,
                  (r.peak_mb - base.peak_mb) / ckpt_mb, r.wall_s);
    };
    row("baseline (libtorch loaded, idle)", base);
    row("average_checkpoints (streaming)", stream);
    row("load all N + sum (non-streaming)", load_all);
    std::printf(
        "\nstreaming peak above baseline: %.2f x the largest tensor, %.2f x one checkpoint\n",
        (stream.peak_mb - base.peak_mb) / (largest / 1048576.0),
        (stream.peak_mb - base.peak_mb) / ckpt_mb);
    if (!same) std::printf("warning: the streamed average has the wrong number of tensors\n");
  } catch (const std::exception& e) {
    std::cerr << "merge_memory: " << e.what() << "\n";
    fs::remove_all(a.dir);
    return 1;
  }
  return 0;
}
