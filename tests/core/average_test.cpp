// The posterior-weighted parameter average that initialises a new expert (BTM), by hand.
#include <gtest/gtest.h>

#include "btx/io/safetensors.h"
#include "btx/pipeline/experts.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "test_util.h"

namespace btx {
namespace {

TEST(WeightedAverage, HandMadeWeights) {
  testing::TempDir dir;
  ModelConfig c;
  c.vocab_size = 8;
  c.hidden_size = 4;
  c.intermediate_size = 8;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 2;
  CausalLM a(c), b(c);
  {
    torch::NoGradGuard ng;
    for (auto& p : a->parameters()) p.fill_(1.0);
    for (auto& p : b->parameters()) p.fill_(3.0);
  }
  save_checkpoint(dir / "a", {&a, nullptr, nullptr, {}});
  save_checkpoint(dir / "b", {&b, nullptr, nullptr, {}});
  // Weights 1 : 3 (normalised to 0.25 / 0.75): every parameter = 0.25 * 1 + 0.75 * 3 = 2.5.
  write_weighted_average({{dir / "a", 1.0}, {dir / "b", 3.0}}, dir / "avg");
  for (auto& [name, t] : load_safetensors(dir / "avg" / "model.safetensors").tensors) {
    EXPECT_TRUE(torch::allclose(t, torch::full_like(t, 2.5))) << name;
  }
  EXPECT_EQ(load_model_config(dir / "avg"), c);
  // One checkpoint with all the weight gives it back exactly.
  write_weighted_average({{dir / "a", 0.0}, {dir / "b", 5.0}}, dir / "only_b");
  EXPECT_EQ(load_safetensors(dir / "only_b" / "model.safetensors")
                .tensors.at("model.norm.weight")
                .sum()
                .item<float>(),
            12.0f);
  EXPECT_THROW(write_weighted_average({{dir / "a", 0.0}}, dir / "zero"), Error);
}

}  // namespace
}  // namespace btx
