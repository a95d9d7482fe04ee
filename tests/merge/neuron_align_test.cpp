// Neuron alignment (merge/neuron_align.h, Symphony-MoE): permuting an FFN's neurons leaves the
// model's output unchanged; a model whose neurons were shuffled layer by layer is aligned back
// to the original exactly, also when its weights were perturbed a little (as an expert's are
// after training); likewise a model whose residual stream was permuted (with Qwen's biases and
// q/k norms, untied head); models of other shapes are refused.
#include "btx/merge/neuron_align.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model_util.h"
#include "test_util.h"

namespace btx {
namespace {

ModelConfig align_config() {
  return testing::small_model_config(60, 16, 32, 2, 4, 2, 32);
}

// A copy of `m`'s weights in a new model of the same config.
CausalLM copy_of(CausalLM& m) {
  CausalLM out(m->config());
  torch::NoGradGuard ng;
  const auto src = m->named_parameters();
  for (auto& p : out->named_parameters()) p.value().copy_(src[p.key()]);
  return out;
}

TEST(NeuronAlign, ShuffledNeuronsAreFoundAgainExactly) {
  torch::manual_seed(5);
  torch::NoGradGuard ng;
  CausalLM anchor(align_config());
  const auto ids = torch::randint(0, 60, {6, 24}, torch::kInt64);
  for (double noise : {0.0, 0.002}) {
    SCOPED_TRACE(noise);
    CausalLM expert = copy_of(anchor);
    if (noise > 0) {
      for (auto& p : expert->named_parameters())
        p.value().add_(noise * torch::randn_like(p.value()));
    }
    const auto before = expert->forward(ids);
    std::vector<std::vector<int64_t>> shuffles;
    for (int64_t l = 0; l < 2; ++l) {
      const auto s = torch::randperm(32, torch::kInt64);
      shuffles.emplace_back(s.data_ptr<int64_t>(), s.data_ptr<int64_t>() + 32);
      permute_ffn_neurons(expert, l, shuffles.back());
    }
    // A permutation of the neurons computes the same function.
    EXPECT_TRUE(torch::allclose(expert->forward(ids), before, 1e-5, 1e-5));
    const auto perms = align_ffn_neurons(anchor, expert, ids);
    ASSERT_EQ(perms.size(), 2u);
    for (int64_t l = 0; l < 2; ++l) {
      // Anchor neuron i was at shuffles[l]^-1(i) in the shuffled expert.
      for (int64_t i = 0; i < 32; ++i) EXPECT_EQ(shuffles[l][perms[l][i]], i) << l << " " << i;
    }
    EXPECT_TRUE(torch::allclose(expert->forward(ids), before, 1e-5, 1e-5));
    if (noise == 0) {
      const auto a = anchor->named_parameters();
      for (auto& p : expert->named_parameters()) {
        EXPECT_TRUE(torch::equal(p.value(), a[p.key()])) << p.key();
      }
    }
  }
}

// A Qwen3-like model: every tensor kind the residual permutation must know, and an untied head.
ModelConfig qwen_like_config() {
  ModelConfig c = align_config();
  c.base_model_type = BaseModelType::kQwen3;
  c.attention_bias = true;
  c.tie_word_embeddings = false;
  return c;
}

TEST(NeuronAlign, PermutedResidualStreamIsFoundAgainExactly) {
  for (const auto& config : {align_config(), qwen_like_config()}) {
    SCOPED_TRACE(name_of(config.base_model_type));
    torch::manual_seed(9);
    torch::NoGradGuard ng;
    CausalLM anchor(config);
    for (auto& p : anchor->named_parameters()) {  // biases and norms that are not 0 and 1
      if (p.key().find("bias") != std::string::npos || p.key().find("norm") != std::string::npos)
        p.value().add_(0.1 * torch::randn_like(p.value()));
    }
    const auto ids = torch::randint(0, 60, {6, 24}, torch::kInt64);
    CausalLM expert = copy_of(anchor);
    const auto before = expert->forward(ids);
    const auto s = torch::randperm(16, torch::kInt64);
    const std::vector<int64_t> shuffle(s.data_ptr<int64_t>(), s.data_ptr<int64_t>() + 16);
    permute_residual_stream(expert, shuffle);
    // The permuted model computes the same function, with different weights.
    EXPECT_TRUE(torch::allclose(expert->forward(ids), before, 1e-5, 1e-5));
    EXPECT_FALSE(
        torch::equal(expert->model->embed_tokens->weight, anchor->model->embed_tokens->weight));
    const auto perm = align_residual_stream(anchor, expert, ids);
    for (int64_t i = 0; i < 16; ++i) EXPECT_EQ(shuffle[perm[i]], i) << i;
    const auto a = anchor->named_parameters();
    for (auto& p : expert->named_parameters()) {
      EXPECT_TRUE(torch::equal(p.value(), a[p.key()])) << p.key();
    }
  }
}

TEST(NeuronAlign, ResidualPermutationByHandOnTheEmbeddingAndNorm) {
  torch::NoGradGuard ng;
  CausalLM m(align_config());
  m->model->embed_tokens->weight.copy_(torch::arange(60 * 16, torch::kFloat32).reshape({60, 16}));
  m->model->norm->weight.copy_(torch::arange(16, torch::kFloat32));
  std::vector<int64_t> perm(16);
  for (int64_t i = 0; i < 16; ++i) perm[i] = 15 - i;  // reversed
  permute_residual_stream(m, perm);
  EXPECT_EQ(m->model->embed_tokens->weight[2][0].item<float>(), 2 * 16 + 15);
  EXPECT_EQ(m->model->embed_tokens->weight[2][15].item<float>(), 2 * 16);
  EXPECT_EQ(m->model->norm->weight[0].item<float>(), 15);
  EXPECT_EQ(m->model->norm->weight[3].item<float>(), 12);
}

TEST(NeuronAlign, CorrelationOfAModelWithItselfIsOneOnTheDiagonal) {
  torch::manual_seed(6);
  CausalLM m(align_config());
  CausalLM same = copy_of(m);
  const auto corr = neuron_correlations(m, same, torch::randint(0, 60, {4, 16}, torch::kInt64));
  ASSERT_EQ(corr.size(), 2u);
  for (const auto& c : corr) {
    EXPECT_EQ(c.sizes(), (std::vector<int64_t>{32, 32}));
    EXPECT_TRUE(torch::allclose(c.diagonal(), torch::ones({32}, torch::kFloat64), 1e-9, 1e-9));
    EXPECT_LE(c.abs().max().item<double>(), 1.0 + 1e-9);
  }
}

TEST(NeuronAlign, ModelsOfOtherShapesAreRefused) {
  CausalLM a(align_config());
  ModelConfig wider = align_config();
  wider.intermediate_size = 40;
  CausalLM b(wider);
  const auto msg = testing::error_of([&] {
    neuron_correlations(a, b, torch::zeros({1, 4}, torch::kInt64));
  });
  EXPECT_NE(msg.find("intermediate_size"), std::string::npos) << msg;
}

}  // namespace
}  // namespace btx
