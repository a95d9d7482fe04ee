// bf16 autocast (btx --precision bf16) on the CPU, which LibTorch 1.13 supports as CUDA does:
// the forward runs its matrix products in bf16 and stays close to fp32, the loss is fp32, the
// weights and their gradients stay fp32, and the guard restores fp32 when it ends; training
// with it follows the fp32 run and writes fp32 checkpoints and optimizer state.
#include <gtest/gtest.h>

#include <sstream>

#include "btx/io/safetensors.h"
#include "btx/util/device.h"
#include "moe_util.h"
#include "tiny_run.h"

namespace btx {
namespace {

TEST(Autocast, Bf16ForwardIsCloseToFp32AndKeepsWeightsFp32) {
  for (const auto& c : {testing::small_model_config(40, 16, 24, 2, 4, 2, 32),
                        testing::routed_config("mixtral", 4, 2, "top-k"),
                        testing::routed_config("smear", 3, 1, "prefix")}) {
    SCOPED_TRACE(name_of(c.model_type));
    torch::manual_seed(7);
    CausalLM m(c);
    const auto ids = torch::randint(0, c.vocab_size, {4, 13}, torch::kInt64);
    const auto fp32 = token_nll(m, ids).detach();
    torch::Tensor bf16;
    {
      AutocastGuard guard(torch::kCPU, true);
      EXPECT_EQ(m->model->embed_tokens->forward(ids.narrow(1, 0, 2)).dtype(), torch::kFloat32);
      EXPECT_EQ(torch::matmul(torch::ones({2, 2}), torch::ones({2, 2})).dtype(), torch::kBFloat16);
      bf16 = token_nll(m, ids);
      EXPECT_EQ(bf16.dtype(), torch::kFloat32);
    }
    bf16.mean().backward();
    for (const auto& p : m->parameters()) {
      EXPECT_EQ(p.dtype(), torch::kFloat32);
      if (p.grad().defined()) {
        EXPECT_EQ(p.grad().dtype(), torch::kFloat32);
      }
    }
    // Rounded (not the same numbers), but close: bf16 keeps 8 bits of mantissa.
    const double diff = (bf16.detach() - fp32).abs().mean().item<double>();
    EXPECT_GT(diff, 0.0);
    EXPECT_LT(diff / fp32.abs().mean().item<double>(), 2e-2);
    // The guard has ended: fp32 again.
    EXPECT_EQ(torch::matmul(torch::ones({2, 2}), torch::ones({2, 2})).dtype(), torch::kFloat32);
    EXPECT_TRUE(torch::equal(token_nll(m, ids).detach(), fp32));
  }
  AutocastGuard off(torch::kCPU, false);  // disabled: nothing changes
  EXPECT_EQ(torch::matmul(torch::ones({2, 2}), torch::ones({2, 2})).dtype(), torch::kFloat32);
}

TEST(Autocast, Bf16TrainingFollowsFp32AndSavesFp32) {
  testing::TempDir dir("btx-bf16");
  const fs::path run_root = dir / "run";
  testing::prepare_tiny_run(dir.path(), run_root);
  const TrainResult fp32 = train(testing::tiny_job(run_root, dir / "fp32"));
  set_default_bf16(true);
  TrainResult bf16;
  try {
    bf16 = train(testing::tiny_job(run_root, dir / "bf16"));
  } catch (...) {
    set_default_bf16(false);
    throw;
  }
  set_default_bf16(false);
  ASSERT_TRUE(fp32.finished && bf16.finished);
  std::istringstream a(read_file(dir / "fp32" / "metrics.jsonl"));
  std::istringstream b(read_file(dir / "bf16" / "metrics.jsonl"));
  int compared = 0;
  bool differ = false;
  for (std::string la, lb; std::getline(a, la) && std::getline(b, lb);) {
    const auto ja = nlohmann::json::parse(la), jb = nlohmann::json::parse(lb);
    if (!ja.contains("loss")) continue;
    const double x = ja.at("loss").get<double>(), y = jb.at("loss").get<double>();
    EXPECT_NEAR(x, y, 0.02 * x) << la << "\n" << lb;
    differ = differ || x != y;
    ++compared;
  }
  EXPECT_GT(compared, 0);
  EXPECT_TRUE(differ) << "bf16 autocast changed nothing";
  for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
    for (const auto& [name, t] : load_safetensors(dir / "bf16" / file).tensors) {
      EXPECT_EQ(t.dtype(), torch::kFloat32) << file << " " << name;
    }
  }
}

}  // namespace
}  // namespace btx
