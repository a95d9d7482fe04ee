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
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "btx/model/layers.h"
#include "btx/model/moe.h"
#include "btx/model/smear.h"

namespace {

struct Args {
  int64_t hidden = 256, inner = 688, tokens = 4096, experts = 4, reps = 5;
  std::vector<int64_t> seq = {64, 256, 1024};
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

btx::ModelConfig layer_config(const Args& a, const std::string& type, const std::string& mode) {
  btx::ModelConfig c;
  c.model_type = type;
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

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--hidden")
      a.hidden = std::stoll(v);
    else if (k == "--inner")
      a.inner = std::stoll(v);
    else if (k == "--tokens")
      a.tokens = std::stoll(v);
    else if (k == "--experts")
      a.experts = std::stoll(v);
    else if (k == "--reps")
      a.reps = std::stoll(v);
    else if (k == "--seq")
      a.seq = parse_list(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
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
