// The figures of the GPU check (scripts/gpu_check.sh), on the process's device: any size, so
// that the same program runs here at tiny size on the CPU (--device cpu) and on a GPU at ~125M.
//  - dense: training tokens/s of one dense model (forward, cross-entropy, backward, clip, btx's
//    AdamW) and its model FLOPs utilisation against --peak-tflops. FLOP convention: btx's
//    forward count (forward_flops_per_token, Kaplan et al. 2020: 2 x the active non-embedding
//    weights + 2 C V for the head + 2 L T C for attention) times 3 for forward and backward.
//  - moe: the same step for a Mixtral-style model of 8 experts, top-2, each expert half the
//    dense FFN's width (so the active parameters equal the dense model's), as a ratio of times;
//    and one MoE layer's expert products (forward and backward) each way moe.h offers (a loop
//    over experts, padded bmm, grouped products: on the CPU or an old LibTorch the grouped ones
//    fall back to bmm).
//  - python: PyTorch's Python front end (bench/py/train_throughput.py) on the same model, batch
//    and device, the ratio btx / python of tokens/s.
//  - generation: greedy decoding with the KV cache, tokens/s at each --gen-batches size.
// Prints a markdown table and writes every figure to --json.
//   gpu_bench [--device cpu] [--precision fp32|bf16] [--hidden 768 --layers 12 --heads 12
//             --vocab 32768 --seq 1024 --batch 8 --steps 10 --warmup 3] [--peak-tflops 0]
//             [--gen-batches 1,32 --gen-prompt 32 --gen-new 64] [--python python3 | ""]
//             [--json PATH]
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_model.h"
#include "btx/model/kv_cache.h"
#include "btx/model/llama.h"
#include "btx/model/moe.h"
#include "btx/train/adamw.h"
#include "btx/util/device.h"
#include "btx/util/error.h"

namespace {

struct Args {
  std::string device = "cpu", precision = "fp32", python = "python3", json;
  int64_t hidden = 768, layers = 12, heads = 12, vocab = 32768, seq = 1024, batch = 8, steps = 10,
          warmup = 3;
  double peak_tflops = 0;
  std::vector<int64_t> gen_batches = {1, 32};
  int64_t gen_prompt = 32, gen_new = 64;
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

btx::ModelConfig dense_config(const Args& a) {
  btx::ModelConfig c = bench_model_config(a.vocab, a.hidden, a.layers, a.heads);
  c.max_position_embeddings = std::max(a.seq, a.gen_prompt + a.gen_new);
  return c;
}

// 8 experts, top-2, each half the dense FFN's width: the dense model's active parameters.
btx::ModelConfig moe_config(const Args& a) {
  btx::ModelConfig c = dense_config(a);
  c.model_type = btx::ModelType::kMixtral;
  c.router_mode = "top-k";
  c.num_local_experts = 8;
  c.num_experts_per_tok = 2;
  c.intermediate_size = c.intermediate_size / 2;
  return c;
}

// One model's training step: milliseconds (the mean of `steps`), its active parameters and its
// forward FLOPs per token at T = seq.
struct StepFigures {
  double ms = 0;
  int64_t params_active = 0;
  int64_t forward_flops_per_token = 0;
};
StepFigures train_step(const btx::ModelConfig& c, const Args& a, torch::Device device, bool bf16) {
  torch::manual_seed(0);
  btx::CausalLM model(c);
  model->to(device);
  StepFigures f;
  f.params_active = model->num_active_params();
  f.forward_flops_per_token = btx::forward_flops_per_token(model, a.seq);
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
  btx::AdamW opt(named, btx::AdamWOptions{0.9, 0.95, 1e-8, 0.1});
  const auto batch = torch::randint(0, a.vocab, {a.batch, a.seq + 1}, torch::kLong).to(device);
  auto step = [&] {
    opt.zero_grad();
    torch::Tensor loss;
    {
      btx::AutocastGuard autocast(device, bf16);
      loss = btx::lm_loss(model, batch);
    }
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    opt.step(1e-3);
    return loss.item<double>();  // waits for the device
  };
  for (int64_t i = 0; i < a.warmup; ++i) step();
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < a.steps; ++i) step();
  f.ms = 1000 * seconds_since(t0) / static_cast<double>(a.steps);
  return f;
}

// Milliseconds for one MoE layer's expert products (forward and backward) over batch x seq
// tokens, multiplied as `how` says (moe.h: a loop over experts, padded bmm, grouped products).
double dispatch_ms(const Args& a, torch::Device device, bool bf16, btx::ExpertProducts how) {
  torch::manual_seed(1);
  const btx::ModelConfig c = moe_config(a);
  btx::MoeFfn moe(c);
  moe->to(device);
  const int64_t N = a.batch * a.seq;
  auto x = torch::randn({N, a.hidden}, torch::TensorOptions().device(device).requires_grad(true));
  auto once = [&] {
    btx::AutocastGuard autocast(device, bf16);
    const auto r = moe->route(moe->gate(x).to(torch::kFloat32), a.batch, a.seq);
    auto y = btx::dispatch_experts(moe->experts, x, r, false, how);
    y.to(torch::kFloat32).sum().backward();
    return x.grad().sum().item<double>();  // waits for the device
  };
  for (int64_t i = 0; i < a.warmup; ++i) once();
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < a.steps; ++i) once();
  return 1000 * seconds_since(t0) / static_cast<double>(a.steps);
}

// Tokens/s of greedy decoding with the KV cache for B prompts of a.gen_prompt tokens.
double generation_tokens_per_s(btx::CausalLM& m, const Args& a, int64_t B, torch::Device device,
                               bool bf16) {
  torch::NoGradGuard no_grad;
  btx::AutocastGuard autocast(device, bf16);
  auto run = [&] {
    auto ids = torch::randint(3, a.vocab, {B, a.gen_prompt}, torch::kInt64).to(device);
    btx::KVCache cache;
    auto next_input = ids;
    torch::Tensor next;
    for (int64_t t = 0; t < a.gen_new; ++t) {
      auto logits = m->forward_cached(next_input, cache);
      next = logits.select(1, -1).argmax(-1, /*keepdim=*/true);  // (B, 1)
      next_input = next;
    }
    return next.cpu();  // waits for the device
  };
  run();  // warm-up
  const auto t0 = Clock::now();
  run();
  return static_cast<double>(B * a.gen_new) / seconds_since(t0);
}

// The Python front end's tokens/s on the same model and device (JSON line of
// bench/py/train_throughput.py), or null when it cannot run.
nlohmann::json python_figures(const Args& a, bool bf16) {
  if (a.python.empty()) return nullptr;
  const std::string cmd =
      a.python + " " + std::string(BTX_SOURCE_DIR) + "/bench/py/train_throughput.py --hidden " +
      std::to_string(a.hidden) + " --layers " + std::to_string(a.layers) + " --heads " +
      std::to_string(a.heads) + " --vocab " + std::to_string(a.vocab) + " --seq " +
      std::to_string(a.seq) + " --batch " + std::to_string(a.batch) + " --steps " +
      std::to_string(a.steps) + " --warmup " + std::to_string(a.warmup) + " --device " + a.device +
      (bf16 ? " --bf16" : "");
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return nullptr;
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), pipe)) out.append(buf, n);
  if (pclose(pipe) != 0) {
    std::fprintf(stderr, "python run failed: %s\n", cmd.c_str());
    return nullptr;
  }
  try {
    return nlohmann::json::parse(out.substr(out.rfind('{')));
  } catch (const std::exception&) {
    return nullptr;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"The GPU check's figures (dense MFU, MoE / dense, btx / python, generation)"};
  app.add_option("--device", a.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--precision", a.precision, "fp32 or bf16 (autocast)")->capture_default_str();
  app.add_option("--hidden", a.hidden)->capture_default_str();
  app.add_option("--layers", a.layers)->capture_default_str();
  app.add_option("--heads", a.heads)->capture_default_str();
  app.add_option("--vocab", a.vocab)->capture_default_str();
  app.add_option("--seq", a.seq)->capture_default_str();
  app.add_option("--batch", a.batch)->capture_default_str();
  app.add_option("--steps", a.steps)->capture_default_str();
  app.add_option("--warmup", a.warmup)->capture_default_str();
  app.add_option("--peak-tflops", a.peak_tflops, "the device's peak for MFU (0: not computed)")
      ->capture_default_str();
  app.add_option("--gen-batches", a.gen_batches)->delimiter(',');
  app.add_option("--gen-prompt", a.gen_prompt)->capture_default_str();
  app.add_option("--gen-new", a.gen_new)->capture_default_str();
  app.add_option("--python", a.python, "the Python with torch (\"\": skip the anchor)")
      ->capture_default_str();
  app.add_option("--json", a.json, "write the figures here");
  CLI11_PARSE(app, argc, argv);
  try {
    const torch::Device device = btx::parse_device(a.device, "--device");
    const bool bf16 = btx::parse_precision(a.precision, "--precision");
    nlohmann::json out = {{"device", a.device},
                          {"precision", a.precision},
                          {"torch", TORCH_VERSION},
                          {"shape",
                           {{"hidden", a.hidden},
                            {"layers", a.layers},
                            {"heads", a.heads},
                            {"vocab", a.vocab},
                            {"seq", a.seq},
                            {"batch", a.batch}}},
                          {"flop_convention",
                           "3 x forward_flops_per_token (Kaplan: 2 x active non-embedding "
                           "weights + 2CV + 2LTC) per trained token"}};
    std::printf("| figure | value |\n|---|---:|\n");
    // Dense training and its MFU.
    const StepFigures dense = train_step(dense_config(a), a, device, bf16);
    const double dense_ms = dense.ms;
    const int64_t dense_active = dense.params_active;
    const double tokens_per_s = static_cast<double>(a.batch * a.seq) / (dense_ms / 1000);
    const double flops_per_token = 3.0 * static_cast<double>(dense.forward_flops_per_token);
    const double achieved_tflops = flops_per_token * tokens_per_s / 1e12;
    out["dense"] = {{"step_ms", dense_ms},
                    {"tokens_per_s", tokens_per_s},
                    {"params_active", dense_active},
                    {"train_flops_per_token", flops_per_token},
                    {"achieved_tflops", achieved_tflops}};
    std::printf("| dense: params | %lld |\n", static_cast<long long>(dense_active));
    std::printf("| dense: step (ms) | %.1f |\n| dense: tokens/s | %.0f |\n", dense_ms,
                tokens_per_s);
    std::printf("| dense: achieved TFLOP/s | %.3f |\n", achieved_tflops);
    if (a.peak_tflops > 0) {
      out["dense"]["mfu"] = achieved_tflops / a.peak_tflops;
      out["peak_tflops"] = a.peak_tflops;
      std::printf("| dense: MFU (peak %.0f TFLOP/s) | %.1f%% |\n", a.peak_tflops,
                  100 * achieved_tflops / a.peak_tflops);
    }
    // The MoE step at equal active parameters.
    const StepFigures moe = train_step(moe_config(a), a, device, bf16);
    const double moe_ms = moe.ms;
    const int64_t moe_active = moe.params_active;
    out["moe"] = {{"experts", 8},
                  {"top_k", 2},
                  {"step_ms", moe_ms},
                  {"params_active", moe_active},
                  {"step_ratio_to_dense", moe_ms / dense_ms}};
    std::printf("| moe 8x top-2: active params | %lld |\n", static_cast<long long>(moe_active));
    std::printf("| moe 8x top-2: step (ms) | %.1f |\n| moe / dense step | %.2f |\n", moe_ms,
                moe_ms / dense_ms);
    // The MoE layer's expert products, each way.
    out["moe"]["grouped_mm_compiled"] = btx::grouped_mm_compiled();
    const double loop_ms = dispatch_ms(a, device, bf16, btx::ExpertProducts::kLoop);
    for (const auto& [name, how] : {std::pair{"loop", btx::ExpertProducts::kLoop},
                                    {"batched", btx::ExpertProducts::kBatched},
                                    {"grouped", btx::ExpertProducts::kGrouped}}) {
      const double ms =
          how == btx::ExpertProducts::kLoop ? loop_ms : dispatch_ms(a, device, bf16, how);
      out["moe"]["dispatch_ms"][name] = ms;
      std::printf("| moe layer, expert products %s (ms, fwd+bwd) | %.2f (%.2fx the loop) |\n", name,
                  ms, ms / loop_ms);
    }
    // The Python front end on the same model and device.
    const auto py = python_figures(a, bf16);
    if (!py.is_null()) {
      out["python"] = py;
      const double py_tps = py.at("tokens_per_s").get<double>();
      out["python"]["btx_over_python"] = tokens_per_s / py_tps;
      std::printf("| python eager: tokens/s | %.0f |\n| btx / python | %.2f |\n", py_tps,
                  tokens_per_s / py_tps);
    }
    // Generation.
    {
      torch::manual_seed(0);
      btx::CausalLM m(dense_config(a));
      m->to(device);
      m->eval();
      for (const int64_t b : a.gen_batches) {
        const double tps = generation_tokens_per_s(m, a, b, device, bf16);
        out["generation"][std::to_string(b)] = {{"tokens_per_s", tps}};
        std::printf("| generation, batch %lld: tokens/s | %.0f |\n", static_cast<long long>(b),
                    tps);
      }
    }
    if (!a.json.empty()) std::ofstream(a.json) << out.dump(2) << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
