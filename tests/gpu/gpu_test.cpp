// GPU tests (label `gpu`): each is skipped where LibTorch sees no CUDA device (Debian's LibTorch
// has no CUDA; scripts/gpu_build.sh builds btx against PyTorch's CUDA LibTorch on a GPU machine).
// - The same models give the same logits on the CPU and the GPU (fp32; dense, MoE, SMEAR).
// - Training the tiny seed with the process's device set to cuda:0 follows the CPU run (losses
//   and final weights), writes a checkpoint that loads on the CPU, and hands back a CPU model.
// - Evaluation and generation of a checkpoint opened with the device set to cuda:0 run there and
//   agree with the CPU (losses; greedy tokens), batched decoding included; an ensemble's experts
//   too, their mixture on the CPU.
// - btx's AdamW fused on the GPU (at::_fused_adamw_) makes the per-tensor update's steps.
// - MoE dispatch: the grouped products (bmm, and at::_grouped_mm where LibTorch has it) equal the
//   per-expert loop in outputs and gradients, in fp32 and under bf16 autocast.
#include <gtest/gtest.h>

#include <sstream>

#include "btx/eval/ensemble.h"
#include "btx/generate/batch_decoder.h"
#include "btx/generate/decoder.h"
#include "btx/generate/generate.h"
#include "btx/model/moe.h"
#include "btx/run/model_folder.h"
#include "btx/run/model_scorer.h"
#include "btx/train/adamw.h"
#include "btx/train/checkpoint.h"
#include "btx/util/device.h"
#include "moe_util.h"
#include "tiny_run.h"

namespace btx {
namespace {

#define BTX_REQUIRE_CUDA()                                                                      \
  if (!torch::cuda::is_available()) {                                                           \
    GTEST_SKIP() << "no CUDA device visible to this LibTorch (build with scripts/gpu_build.sh " \
                    "on a GPU machine)";                                                        \
  }

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kCPU, torch::kFloat64) - b.to(torch::kCPU, torch::kFloat64))
      .abs()
      .max()
      .item<double>();
}

TEST(Gpu, LogitsAgreeBetweenCpuAndGpu) {
  BTX_REQUIRE_CUDA();
  torch::NoGradGuard no_grad;
  const torch::Device gpu(torch::kCUDA, 0);
  for (const auto& c : {testing::small_model_config(40, 16, 24, 2, 4, 2, 32),
                        testing::routed_config("mixtral", 4, 2, "top-k"),
                        testing::routed_config("smear", 3, 1, "prefix")}) {
    torch::manual_seed(3);
    CausalLM m(c);
    m->eval();
    const auto ids = torch::randint(0, c.vocab_size, {3, 12}, torch::kInt64);
    const auto on_cpu = m->forward(ids);
    m->to(gpu);
    EXPECT_TRUE(device_of(*m).is_cuda());
    const auto on_gpu = m->forward(ids.to(gpu));
    EXPECT_LT(max_abs(on_cpu, on_gpu), 1e-4) << name_of(c.model_type);
  }
}

TEST(Gpu, TrainingOnTheGpuFollowsTheCpu) {
  BTX_REQUIRE_CUDA();
  testing::TempDir dir("btx-gpu");
  const fs::path run_root = dir / "run";
  testing::prepare_tiny_run(dir.path(), run_root);

  const TrainResult cpu = train(testing::tiny_job(run_root, dir / "cpu"));
  set_default_device(torch::Device(torch::kCUDA, 0));
  TrainResult gpu;
  try {
    gpu = train(testing::tiny_job(run_root, dir / "gpu"));
  } catch (...) {
    set_default_device(torch::kCPU);
    throw;
  }
  set_default_device(torch::kCPU);
  ASSERT_TRUE(cpu.finished && gpu.finished);
  EXPECT_TRUE(device_of(*gpu.model).is_cpu()) << "the trained model comes back on the CPU";

  // The logged losses follow each other (fp32 on both; summation order differs).
  std::istringstream a(read_file(dir / "cpu" / "metrics.jsonl"));
  std::istringstream b(read_file(dir / "gpu" / "metrics.jsonl"));
  int compared = 0;
  for (std::string la, lb; std::getline(a, la) && std::getline(b, lb);) {
    const auto ja = nlohmann::json::parse(la), jb = nlohmann::json::parse(lb);
    if (!ja.contains("loss")) continue;
    EXPECT_NEAR(ja.at("loss").get<double>(), jb.at("loss").get<double>(), 1e-3) << la << lb;
    ++compared;
  }
  EXPECT_GT(compared, 0);
  // The final weights, and the checkpoint read back on the CPU.
  const auto saved = load_model(dir / "gpu");
  auto pc = cpu.model->parameters(), pg = gpu.model->parameters(), ps = saved->parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    EXPECT_LT(max_abs(pc[i], pg[i]), 1e-3) << "tensor " << i;
    EXPECT_TRUE(torch::equal(pg[i], ps[i])) << "tensor " << i;
  }
}

TEST(Gpu, EvaluationAndGenerationRunOnTheGpuAndAgreeWithTheCpu) {
  BTX_REQUIRE_CUDA();
  testing::TempDir dir("btx-gpu-eval");
  const fs::path run_root = dir / "run";
  testing::prepare_tiny_run(dir.path(), run_root);
  ASSERT_TRUE(train(testing::tiny_job(run_root, dir / "seed")).finished);
  const auto batch = torch::randint(0, 64, {2, 17}, torch::kInt64);
  const std::vector<int32_t> prompt = {5, 9, 11, 3};
  auto run_on = [&](torch::Device d) {
    set_default_device(d);
    const auto folder = ModelFolder::open(dir / "seed");
    auto scorer = open_scorer(folder);
    const auto nll = scorer->token_nll(batch).cpu();
    auto decoder = open_decoder(folder, /*use_cache=*/true);
    std::vector<int32_t> seq = prompt;
    for (int i = 0; i < 8; ++i) {
      seq.push_back(static_cast<int32_t>(decoder->next_scores(seq).argmax().item<int64_t>()));
    }
    auto rows = decoder->batch_decoder();
    const auto first = rows->add_rows({prompt, {7, 7}}).cpu();
    set_default_device(torch::kCPU);
    return std::make_tuple(nll, seq, first, folder.model()->parameters()[0].device());
  };
  const auto [nll_gpu, seq_gpu, rows_gpu, where] = run_on(torch::Device(torch::kCUDA, 0));
  EXPECT_TRUE(where.is_cuda()) << "the checkpoint was moved to the process's device";
  const auto [nll_cpu, seq_cpu, rows_cpu, where_cpu] = run_on(torch::kCPU);
  EXPECT_LT(max_abs(nll_gpu, nll_cpu), 1e-4);
  EXPECT_EQ(seq_gpu, seq_cpu);
  EXPECT_LT(max_abs(rows_gpu, rows_cpu), 1e-4);
}

TEST(Gpu, FusedAdamWMakesTheSameStepsAsThePerTensorUpdate) {
  BTX_REQUIRE_CUDA();
  const torch::Device gpu(torch::kCUDA, 0);
  auto make = [&] {
    torch::manual_seed(4);
    CausalLM m(testing::small_model_config(40, 16, 24, 2, 4, 2, 32));
    m->to(gpu);
    return m;
  };
  CausalLM a = make(), b = make();
  auto named = [](CausalLM& m) {
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (auto& p : m->named_parameters()) out.emplace_back(p.key(), p.value());
    return out;
  };
  AdamWOptions fused, loop;
  loop.fused = false;
  AdamW oa(named(a), fused), ob(named(b), loop);
  oa.set_update_mask("model.embed_tokens.weight",
                     torch::ones({40, 16}).index_fill_(0, torch::tensor({3}), 0));
  ob.set_update_mask("model.embed_tokens.weight",
                     torch::ones({40, 16}).index_fill_(0, torch::tensor({3}), 0));
  const auto ids = torch::randint(0, 40, {2, 9}, torch::kInt64).to(gpu);
  for (int s = 0; s < 3; ++s) {
    for (auto [m, o] : {std::pair{&a, &oa}, {&b, &ob}}) {
      o->zero_grad();
      lm_loss(*m, ids).backward();
      o->step(1e-2);
    }
    EXPECT_EQ(oa.last_step_fused(), TORCH_VERSION_MAJOR >= 2);
    EXPECT_FALSE(ob.last_step_fused());
  }
  auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_LT(max_abs(pa[i], pb[i]), 1e-5) << "tensor " << i;
  for (const auto& [k, v] : oa.state()) EXPECT_LT(max_abs(v, ob.state().at(k)), 1e-5) << k;
}

TEST(Gpu, MoeExpertProductsAgreeEachWay) {
  BTX_REQUIRE_CUDA();
  const torch::Device gpu(torch::kCUDA, 0);
  const auto c = testing::routed_config("mixtral", 8, 2, "top-k");
  for (const bool bf16 : {false, true}) {
    torch::manual_seed(6);
    MoeFfn moe(c);
    moe->to(gpu);
    auto x = torch::randn({64, c.hidden_size}, torch::TensorOptions().device(gpu));
    std::vector<torch::Tensor> outs, grads;
    for (const auto how :
         {ExpertProducts::kLoop, ExpertProducts::kBatched, ExpertProducts::kGrouped}) {
      auto xi = x.clone().requires_grad_(true);
      AutocastGuard autocast(gpu, bf16);
      const auto r = moe->route(moe->gate(xi).to(torch::kFloat32), 4, 16);
      auto y = dispatch_experts(moe->experts, xi, r, false, how).to(torch::kFloat32);
      y.sum().backward();
      outs.push_back(y.detach());
      grads.push_back(xi.grad());
    }
    const double tol = bf16 ? 5e-2 : 1e-4;
    for (size_t i = 1; i < outs.size(); ++i) {
      EXPECT_LT(max_abs(outs[i], outs[0]), tol) << "way " << i << (bf16 ? " bf16" : "");
      EXPECT_LT(max_abs(grads[i], grads[0]), tol) << "way " << i << (bf16 ? " bf16" : "");
    }
  }
}

TEST(Gpu, TheEnsembleRunsItsExpertsOnTheGpuAndAgreesWithTheCpu) {
  BTX_REQUIRE_CUDA();
  const torch::Device gpu(torch::kCUDA, 0);
  auto experts_on = [](torch::Device d) {
    std::vector<CausalLM> out;
    for (int j = 0; j < 2; ++j) {
      torch::manual_seed(10 + j);
      CausalLM m(testing::small_model_config(40, 16, 24, 2, 4, 2, 32));
      m->eval();
      m->to(d);
      out.push_back(m);
    }
    return out;
  };
  const auto tokens = torch::randint(0, 40, {2, 13}, torch::kInt64);
  EnsembleOptions o;
  o.prior = EnsemblePrior::kUpdating;
  EnsembleScorer on_gpu({"a", "b"}, experts_on(gpu), o),
      on_cpu({"a", "b"}, experts_on(torch::kCPU), o);
  EXPECT_LT(max_abs(on_gpu.token_nll(tokens), on_cpu.token_nll(tokens)), 1e-4);
  // Batched decoding: the experts' rows on the GPU, the posterior on the CPU.
  EnsembleBatchDecoder bg({"a", "b"}, experts_on(gpu), 0),
      bc({"a", "b"}, experts_on(torch::kCPU), 0);
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {4, 5}};
  EXPECT_LT(max_abs(bg.add_rows(prompts), bc.add_rows(prompts)), 1e-4);
  EXPECT_LT(max_abs(bg.step({7, 8}), bc.step({7, 8})), 1e-4);
  EXPECT_LT(max_abs(bg.posterior(0), bc.posterior(0)), 1e-5);
}

}  // namespace
}  // namespace btx
