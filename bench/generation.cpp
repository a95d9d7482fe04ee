// Generation speed on CPU: tokens per second of greedy decoding with the KV cache (one position
// per step after the prompt) and without it (the whole prefix recomputed for every token), for a
// dense Llama and an MoE with the same active parameters per token (E experts of the dense inner
// width, top-1 routing: a token uses one expert, as many weights as the dense FFN), and SMEAR
// with the same experts (prefix router: every token merges all of them, computed in the linear
// form, so it runs every expert; cached decoding carries the router's running prefix sum), at
// batch 1 and batch 8. The models are the tiny preset's shape with random weights (speed does not
// depend on what they learned). Each configuration decodes `--new` tokens after a `--prompt`-token
// prompt; the variants run interleaved over `--reps` rounds and the table gives each one's median
// tokens/s (batch x new tokens / time) and the cache's speed-up. Prints a table.
// A second table times requests joining a continuous batch (ModelBatchDecoder): `--join`
// prompts of random lengths between 4 and 2 x `--prompt` tokens, read one by one (a forward
// each) and together (one left-padded forward), medians over the rounds.
//   generation [--hidden 128 --inner 352 --layers 4 --experts 4 --prompt 16 --new 128
//               --batches 1,8 --join 8 --reps 3] (--help lists them)
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "bench_util.h"
#include "btx/generate/generate.h"
#include "btx/model/llama.h"

namespace {

struct Args {
  int64_t hidden = 128, inner = 352, layers = 4, experts = 4, prompt = 16, fresh = 128, reps = 3,
          join = 8;
  std::vector<int64_t> batches = {1, 8};
};

// kind: "dense", "moe" (top-1) or "smear" (prefix router: every expert merged per token).
btx::ModelConfig config(const Args& a, const std::string& kind) {
  btx::ModelConfig c;
  c.vocab_size = 4096;
  c.hidden_size = a.hidden;
  c.intermediate_size = a.inner;
  c.num_hidden_layers = a.layers;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.max_position_embeddings = std::max(a.prompt + a.fresh, 2 * a.prompt + 1);
  if (kind != "dense") {
    c.model_type = kind == "moe" ? btx::ModelType::kMixtral : btx::ModelType::kSmear;
    c.router_mode = kind == "moe" ? "top-k" : "prefix";
    c.num_local_experts = a.experts;
    c.num_experts_per_tok = 1;
  }
  return c;
}

// Seconds to decode a.fresh tokens greedily for a batch of B prompts.
double decode_seconds(btx::CausalLM& m, const Args& a, int64_t B, bool cached) {
  torch::NoGradGuard no_grad;
  auto ids = torch::randint(3, m->config().vocab_size, {B, a.prompt}, torch::kInt64);
  const auto start = std::chrono::steady_clock::now();
  btx::KVCache cache;
  auto next_input = ids;
  for (int64_t t = 0; t < a.fresh; ++t) {
    auto logits = cached ? m->forward_cached(next_input, cache) : m->forward(ids);
    auto next = logits.select(1, -1).argmax(-1, /*keepdim=*/true);  // (B, 1)
    ids = torch::cat({ids, next}, 1);
    next_input = next;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Seconds for `prompts` to join an empty batch: one by one, or all in one forward.
double join_seconds(btx::CausalLM& m, const std::vector<std::vector<int32_t>>& prompts,
                    bool together) {
  btx::ModelBatchDecoder batch(m);
  const auto start = std::chrono::steady_clock::now();
  if (together) {
    batch.add_rows(prompts);
  } else {
    for (const auto& p : prompts) batch.add(p);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"Greedy decoding tokens/s with and without the KV cache, dense vs MoE vs SMEAR"};
  app.add_option("--hidden", a.hidden)->capture_default_str();
  app.add_option("--inner", a.inner)->capture_default_str();
  app.add_option("--layers", a.layers)->capture_default_str();
  app.add_option("--experts", a.experts, "MoE experts (top-1)")->capture_default_str();
  app.add_option("--prompt", a.prompt, "Prompt tokens")->capture_default_str();
  app.add_option("--new", a.fresh, "Tokens decoded")->capture_default_str();
  app.add_option("--batches", a.batches)->delimiter(',');
  app.add_option("--join", a.join, "Prompts joining the batch at once")->capture_default_str();
  app.add_option("--reps", a.reps)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  torch::manual_seed(0);
  std::map<std::string, btx::CausalLM> models;
  for (const char* kind : {"dense", "moe", "smear"}) models.emplace(kind, config(a, kind));
  for (auto& [name, m] : models) m->eval();
  std::printf(
      "prompt %lld, %lld new tokens, hidden %lld, inner %lld, %lld layers, MoE %lld experts "
      "top-1; dense %lld params, MoE %lld (%lld active)\n",
      (long long)a.prompt, (long long)a.fresh, (long long)a.hidden, (long long)a.inner,
      (long long)a.layers, (long long)a.experts, (long long)models.at("dense")->num_params(),
      (long long)models.at("moe")->num_params(), (long long)models.at("moe")->num_active_params());
  std::printf("| model | batch | cached tok/s | recomputed tok/s | cache speed-up |\n");
  std::printf("|---|---:|---:|---:|---:|\n");
  for (int64_t B : a.batches) {
    for (const char* name : {"dense", "moe", "smear"}) {
      auto& m = models.at(name);
      decode_seconds(m, a, B, true);  // warm-up
      std::vector<double> cached, full, ratio;
      for (int64_t r = 0; r < a.reps; ++r) {
        const double c = decode_seconds(m, a, B, true), f = decode_seconds(m, a, B, false);
        cached.push_back(B * a.fresh / c);
        full.push_back(B * a.fresh / f);
        ratio.push_back(f / c);
      }
      std::printf("| %s | %lld | %.0f | %.0f | %.2fx |\n", name, (long long)B, median(cached),
                  median(full), median(ratio));
    }
  }

  std::vector<std::vector<int32_t>> prompts;
  auto lengths = torch::randint(4, 2 * a.prompt + 1, {a.join}, torch::kInt64);
  for (int64_t i = 0; i < a.join; ++i) {
    auto ids = torch::randint(3, 4096, {lengths[i].item<int64_t>()}, torch::kInt64);
    prompts.emplace_back(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
  }
  std::printf("\n%lld prompts of %lld to %lld tokens joining an empty batch\n", (long long)a.join,
              (long long)lengths.min().item<int64_t>(), (long long)lengths.max().item<int64_t>());
  std::printf("| model | one by one (ms) | together (ms) | speed-up |\n|---|---:|---:|---:|\n");
  for (const char* name : {"dense", "moe", "smear"}) {
    auto& m = models.at(name);
    join_seconds(m, prompts, true);  // warm-up
    std::vector<double> alone, together, ratio;
    for (int64_t r = 0; r < a.reps; ++r) {
      const double s1 = join_seconds(m, prompts, false), s2 = join_seconds(m, prompts, true);
      alone.push_back(1e3 * s1);
      together.push_back(1e3 * s2);
      ratio.push_back(s1 / s2);
    }
    std::printf("| %s | %.2f | %.2f | %.2fx |\n", name, median(alone), median(together),
                median(ratio));
  }
  return 0;
}
