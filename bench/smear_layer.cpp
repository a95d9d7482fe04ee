// Forward + backward time of one SMEAR FFN layer (model/smear.h) on CPU, E experts of inner
// width F, N = B*T tokens in B sequences of T, next to
//   dense     one SwiGLU expert of width F (what a merged expert costs once merged);
//   moe-top2  the MoE layer (moe.h) with the same experts, top-2 routing;
//   seq       SMEAR with one merged expert per sequence (SMEAR's example-level routing, not
//             causal): B weight merges, then one SwiGLU per sequence;
//   prefix    causal SMEAR in the linear form the model uses: every expert's products on every
//             token, mixed per position;
//   merged    causal SMEAR by materialising each position's merged weights (64 positions at a
//             time): the direct form, which the linear one replaces.
// One step: x (B, T, C) with requires_grad, out = layer(x), objective sum(out * R), backward
// (train mode, expert dropout 0). Variants run interleaved per round; the table gives median
// ms per step and the median per-round ratio to dense. T varies at a fixed N, to show how the
// per-position merge scales with the sequence length. Prints a table.
//   smear_layer [--hidden 256 --inner 688 --tokens 4096 --experts 4 --seq 64,256,1024 --reps 5]
//   (--help lists them)
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench_util.h"
#include "btx/model/layers.h"
#include "btx/model/moe.h"
#include "btx/model/smear.h"

namespace {

struct Args {
  int64_t hidden = 256, inner = 688, tokens = 4096, experts = 4, reps = 5;
  std::vector<int64_t> seq = {64, 256, 1024};
};

btx::ModelConfig layer_config(const Args& a, const std::string& type, const std::string& mode) {
  btx::ModelConfig c;
  c.model_type = btx::parse_named<btx::ModelType>(type, "model type");
  c.vocab_size = 1;  // unused by the layer; validate() wants it positive
  c.hidden_size = a.hidden;
  c.intermediate_size = a.inner;
  c.num_local_experts = a.experts;
  c.num_experts_per_tok = type == "smear" ? a.experts : 2;
  c.router_mode = mode;
  c.num_attention_heads = c.num_key_value_heads = 1;
  return c;
}

void run(const Args& a, int64_t T) {
  torch::manual_seed(0);
  const int64_t B = a.tokens / T, C = a.hidden;
  auto dense = std::make_shared<btx::SwiGluMlpImpl>(a.hidden, a.inner);
  btx::MoeFfn moe(layer_config(a, "mixtral", "top-k"));
  btx::SmearFfn seq(layer_config(a, "smear", "sequence"));
  btx::SmearFfn prefix(layer_config(a, "smear", "prefix"));
  const std::vector<torch::nn::Module*> modules = {dense.get(), moe.get(), seq.get(), prefix.get()};
  for (auto* m : modules) m->train();
  auto x = torch::randn({B, T, C}).requires_grad_(true);
  auto R = torch::randn({B, T, C});
  auto merged_form = [&] {
    auto p = prefix->merge_weights(x).reshape({B * T, a.experts});
    return btx::smear_merge_per_position(x.reshape({B * T, C}), p,
                                         btx::stack_experts(prefix->experts), 64)
        .view({B, T, C});
  };
  double diff = 0;
  {
    torch::NoGradGuard ng;
    diff = (prefix->forward(x) - merged_form()).abs().max().item<double>();
  }
  const std::vector<std::string> names = {"dense", "moe-top2", "seq", "prefix", "merged"};
  std::vector<std::function<torch::Tensor()>> fwd = {
      [&] { return dense->forward(x); }, [&] { return moe->forward(x); },
      [&] { return seq->forward(x); }, [&] { return prefix->forward(x); }, merged_form};
  std::vector<std::vector<double>> ms(names.size()), ratio(names.size());
  for (int64_t rep = -1; rep < a.reps; ++rep) {  // rep -1: warm-up
    std::vector<double> t(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      for (auto* m : modules) m->zero_grad(/*set_to_none=*/true);
      x.mutable_grad() = torch::Tensor();
      const auto start = std::chrono::steady_clock::now();
      (fwd[i]() * R).sum().backward();
      t[i] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                 .count();
    }
    if (rep < 0) continue;
    for (size_t i = 0; i < names.size(); ++i) {
      ms[i].push_back(t[i]);
      ratio[i].push_back(t[i] / t[0]);
    }
  }
  std::printf("%6lld %5lld", static_cast<long long>(T), static_cast<long long>(B));
  for (size_t i = 0; i < names.size(); ++i) {
    std::printf(" %9.1f %6.2fx", median(ms[i]), median(ratio[i]));
  }
  std::printf(" %9.1e\n", diff);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"Forward + backward time of one SMEAR FFN layer vs dense and the top-2 MoE"};
  app.add_option("--hidden", a.hidden, "C")->capture_default_str();
  app.add_option("--inner", a.inner, "F of one expert")->capture_default_str();
  app.add_option("--tokens", a.tokens, "N tokens per step (B*T)")->capture_default_str();
  app.add_option("--experts", a.experts, "E")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seq", a.seq, "sequence lengths T, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--reps", a.reps, "measured rounds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::printf(
      "SMEAR layer, forward+backward, C=%lld F=%lld E=%lld, N=%lld tokens; ms per step "
      "(median of %lld) and ratio to dense\n",
      static_cast<long long>(a.hidden), static_cast<long long>(a.inner),
      static_cast<long long>(a.experts), static_cast<long long>(a.tokens),
      static_cast<long long>(a.reps));
  std::printf("%6s %5s %17s %17s %17s %17s %17s %9s\n", "T", "B", "dense", "moe-top2", "seq",
              "prefix", "merged", "|pre-mrg|");
  for (int64_t T : a.seq) {
    if (a.tokens % T != 0) {
      std::fprintf(stderr, "--tokens %lld is not a multiple of T %lld\n",
                   static_cast<long long>(a.tokens), static_cast<long long>(T));
      return 2;
    }
    run(a, T);
  }
  return 0;
}
