// Neuron alignment (merge/neuron_align.h, Symphony-MoE): permuting an FFN's neurons leaves the
// model's output unchanged; a model whose neurons were shuffled layer by layer is aligned back
// to the original exactly, also when its weights were perturbed a little (as an expert's are
// after training); models of other shapes are refused.
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
