// Forward + backward time of one MoE FFN layer (MoeFfn, top-k routing, E experts of inner width F,
// k of them per token) on CPU, next to
//   dense   a SwiGLU FFN of inner width k*F: the same active parameters per token (router aside)
//           and the same matrix-product FLOPs as the k experts a token uses;
//   naive   the same router and experts, every expert run on every token, its output weighted by
//           a dense (N, E) gate matrix (zero for unchosen experts): what grouped dispatch avoids;
//   experts the MoE's experts alone on tokens already grouped by expert (the counts of a real
//           routing, no router, sort, gather, gate or index_add): MoE/experts is the cost of the
//           dispatch itself, experts/dense that of k*N/E-row products instead of one N-row one.
// One step: x (1, N, C) with requires_grad, out = layer(x), objective sum(out * R) for a fixed
// random R (plus the load-balancing loss for MoE and naive: the layer is in train mode), backward;
// gradients set to none between steps. The variants run interleaved (MoE, dense, naive, experts,
// MoE, ...) so the noise of a shared machine hits them alike; the table gives each one's median
// step time and the median over rounds of the per-round ratios. LibTorch keeps its default
// intra-op threads (not set here); OpenBLAS runs the matrix products on its own threads, i.e. all
// cores unless OPENBLAS_NUM_THREADS says otherwise. Prints a table.
//   moe_layer [--hidden 256 --inner 688 --tokens 4096 --topk 2 --experts 4,8 --reps 10
//              --warmup 2] (--help lists them)
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "btx/model/config.h"
#include "btx/model/layers.h"
#include "btx/model/moe.h"

namespace {

struct Args {
  int64_t hidden = 256, inner = 688, tokens = 16 * 256, topk = 2, reps = 10, warmup = 2;
  std::vector<int64_t> experts = {4, 8};
};

// The naive MoE: the layer's own router and experts, every expert on all N tokens.
torch::Tensor naive_moe(btx::MoeFfnImpl& moe, const torch::Tensor& x, torch::Tensor* aux) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  auto h = x.reshape({B * T, C});
  btx::Routing r = btx::route_top_k(moe.gate(h), moe.top_k);
  auto g = torch::zeros({B * T, moe.num_experts}, h.options()).scatter(1, r.experts, r.weights);
  torch::Tensor out;
  for (int64_t e = 0; e < moe.num_experts; ++e) {
    auto y = moe.experts->ptr(e)->as<btx::MoeExpertImpl>()->forward(h) * g.narrow(1, e, 1);
    out = e == 0 ? y : out + y;
  }
  *aux = btx::load_balancing_loss(r, moe.num_experts, moe.aux_coef);
  return out.view({B, T, C});
}

struct Row {
  int64_t E = 0;
  double moe = 0, dense = 0, naive = 0, experts = 0;                        // median ms per step
  double moe_dense = 0, naive_moe = 0, moe_experts = 0, experts_dense = 0;  // median ratios
  double max_diff = 0;  // |MoE - naive| outputs, a check that both compute the same layer
  double max_load = 0;  // tokens of the busiest expert over the mean (1: perfectly balanced)
};

Row bench(const Args& a, int64_t E) {
  torch::manual_seed(0);
  btx::ModelConfig c;
  c.model_type = btx::ModelType::kMixtral;
  c.vocab_size = 1;  // unused by the layer; validate() wants it positive
  c.hidden_size = a.hidden;
  c.intermediate_size = a.inner;
  c.num_local_experts = E;
  c.num_experts_per_tok = a.topk;
  c.router_mode = "top-k";
  c.num_attention_heads = c.num_key_value_heads = 1;
  btx::MoeFfn moe(c);
  auto dense = std::make_shared<btx::SwiGluMlpImpl>(a.hidden, a.topk * a.inner);
  moe->train();
  dense->train();

  const int64_t N = a.tokens, C = a.hidden;
  auto x = torch::randn({1, N, C}).requires_grad_(true);
  auto R = torch::randn({1, N, C});

  // The experts-only variant: the token counts per expert of the MoE's routing of x.
  std::vector<int64_t> counts(E, 0);
  {
    torch::NoGradGuard no_grad;
    auto r = moe->route(moe->gate(x.view({N, C})), 1, N);
    auto n = torch::bincount(r.experts.reshape({-1}), {}, E);
    for (int64_t e = 0; e < E; ++e) counts[e] = n[e].item<int64_t>();
  }
  Row row;
  row.E = E;
  row.max_load = static_cast<double>(*std::max_element(counts.begin(), counts.end())) * E /
                 static_cast<double>(N * a.topk);
  auto xs = torch::randn({N * a.topk, C}).requires_grad_(true);
  auto Rs = torch::randn({N * a.topk, C});

  {
    torch::NoGradGuard no_grad;
    torch::Tensor aux;
    row.max_diff = (moe->forward(x) - naive_moe(*moe, x, &aux)).abs().max().item<double>();
  }

  auto clear = [&] {
    moe->zero_grad(/*set_to_none=*/true);
    dense->zero_grad(/*set_to_none=*/true);
    x.mutable_grad() = torch::Tensor();
    xs.mutable_grad() = torch::Tensor();
  };
  std::vector<std::function<void()>> steps = {
      [&] {
        auto out = moe->forward(x);  // sets aux_loss(): sequenced before reading it
        auto loss = (out * R).sum() + moe->aux_loss();
        loss.backward();
      },
      [&] {
        auto loss = (dense->forward(x) * R).sum();
        loss.backward();
      },
      [&] {
        torch::Tensor aux;
        auto loss = (naive_moe(*moe, x, &aux) * R).sum() + aux;
        loss.backward();
      },
      [&] {
        std::vector<torch::Tensor> ys;
        int64_t start = 0;
        for (int64_t e = 0; e < E; ++e) {
          if (counts[e] == 0) continue;
          auto* ex = moe->experts->ptr(e)->as<btx::MoeExpertImpl>();
          ys.push_back(ex->forward(xs.narrow(0, start, counts[e])));
          start += counts[e];
        }
        auto loss = (torch::cat(ys) * Rs).sum();
        loss.backward();
      },
  };
  const size_t V = steps.size();
  std::vector<std::vector<double>> ms(V);
  for (int64_t rep = 0; rep < a.warmup + a.reps; ++rep) {
    for (size_t v = 0; v < V; ++v) {
      clear();
      const auto t0 = std::chrono::steady_clock::now();
      steps[v]();
      const double dt =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (rep >= a.warmup) ms[v].push_back(dt);
    }
  }
  auto ratio = [&](size_t num, size_t den) {
    std::vector<double> r;
    for (size_t i = 0; i < ms[num].size(); ++i) r.push_back(ms[num][i] / ms[den][i]);
    return median(r);
  };
  row.moe = median(ms[0]);
  row.dense = median(ms[1]);
  row.naive = median(ms[2]);
  row.experts = median(ms[3]);
  row.moe_dense = ratio(0, 1);
  row.naive_moe = ratio(2, 0);
  row.moe_experts = ratio(0, 3);
  row.experts_dense = ratio(3, 1);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"Forward + backward time of one MoE FFN layer vs dense and naive dispatch"};
  app.add_option("--hidden", a.hidden, "C")->capture_default_str();
  app.add_option("--inner", a.inner, "F of one expert")->capture_default_str();
  app.add_option("--tokens", a.tokens, "N tokens per step")->capture_default_str();
  app.add_option("--topk", a.topk, "k")->capture_default_str();
  app.add_option("--experts", a.experts, "expert counts E, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--reps", a.reps, "measured steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--warmup", a.warmup, "warm-up steps")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const char* blas = std::getenv("OPENBLAS_NUM_THREADS");
  std::printf(
      "moe_layer: C=%lld F=%lld k=%lld N=%lld tokens, forward+backward, median of %lld steps "
      "after %lld warm-up; intra-op threads %d, OPENBLAS_NUM_THREADS=%s\n",
      (long long)a.hidden, (long long)a.inner, (long long)a.topk, (long long)a.tokens,
      (long long)a.reps, (long long)a.warmup, torch::get_num_threads(), blas ? blas : "(unset)");
  std::vector<Row> rows;
  try {
    for (int64_t E : a.experts) rows.push_back(bench(a, E));
  } catch (const std::exception& e) {
    std::cerr << "moe_layer: " << e.what() << "\n";
    return 1;
  }
  std::printf(
      "| E | MoE ms | dense ms | naive ms | experts ms | MoE/dense | naive/MoE | MoE/experts "
      "| experts/dense |\n"
      "|--:|-------:|---------:|---------:|-----------:|----------:|----------:|------------:"
      "|--------------:|\n");
  for (const auto& r : rows) {
    std::printf("| %lld | %6.1f | %8.1f | %8.1f | %10.1f | %9.2f | %9.2f | %11.2f | %13.2f |\n",
                (long long)r.E, r.moe, r.dense, r.naive, r.experts, r.moe_dense, r.naive_moe,
                r.moe_experts, r.experts_dense);
  }
  std::printf("dense = SwiGLU of inner width k*F = %lld; ratios: median over rounds of per-round ",
              (long long)(a.topk * a.inner));
  std::printf("ratios; target MoE/dense <= 1.3\n");
  for (const auto& r : rows) {
    std::printf("E=%lld: busiest expert %.2fx the mean load; max |MoE - naive| output %.2e\n",
                (long long)r.E, r.max_load, r.max_diff);
  }
  return 0;
}
