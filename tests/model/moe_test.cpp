// The MoE FFN against hand-computed routing and its invariants: one expert with k = 1 is the
// dense FFN it came from; identical experts give that FFN for any router; grouped dispatch equals
// running every expert on every token (forward and gradients); the Switch load-balancing loss by
// hand; HF Mixtral parameter names; sample-level routing shares one choice per sequence.
#include "btx/model/moe.h"

#include <gtest/gtest.h>

#include "btx/model/llama.h"
#include "btx/util/error.h"
#include "moe_util.h"
#include "test_util.h"

namespace btx {
namespace {

using testing::load_expert;

ModelConfig moe_config(int64_t experts, int64_t k, const std::string& mode = "top-k") {
  return testing::routed_config("mixtral", experts, k, mode);
}

// Reference: every expert on every token, weighted by the routing's gates.
torch::Tensor naive_moe(MoeFfnImpl& moe, const torch::Tensor& x, const Routing& r) {
  const int64_t N = x.size(0), E = moe.num_experts;
  auto dense_w = torch::zeros({N, E}, x.options()).scatter_add(1, r.experts, r.weights);
  auto out = torch::zeros_like(x);
  for (int64_t e = 0; e < E; ++e) {
    out = out + dense_w.select(1, e).unsqueeze(1) * moe.experts[e]->as<MoeExpertImpl>()->forward(x);
  }
  return out;
}

TEST(MoeRouting, HandComputedTopTwo) {
  // Logits (1, 3, 2, 0): keep experts 1 and 2, gates softmax(3, 2) = (0.7311, 0.2689).
  auto r = route_top_k(torch::tensor({{1.0f, 3.0f, 2.0f, 0.0f}}), 2);
  EXPECT_EQ(r.experts[0][0].item<int64_t>(), 1);
  EXPECT_EQ(r.experts[0][1].item<int64_t>(), 2);
  EXPECT_NEAR(r.weights[0][0].item<float>(), 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(r.weights[0][1].item<float>(), 1.0 / (1.0 + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(r.probs.sum().item<float>(), 1.0, 1e-6);
  // Soft routing: every expert with the full softmax.
  auto s = route_soft(torch::tensor({{0.0f, std::log(3.0f)}}));
  EXPECT_NEAR(s.weights[0][1].item<float>(), 0.75, 1e-6);
  EXPECT_NE(testing::error_of([] { route_top_k(torch::zeros({2, 3}), 4); }), "");
}

TEST(MoeRouting, TopOneGateIsOneForwardAndTheProbabilityBackward) {
  auto logits = torch::tensor({{0.0f, std::log(3.0f)}}, torch::requires_grad());
  auto r = route_top_k(logits, 1);
  EXPECT_EQ(r.experts.item<int64_t>(), 1);
  EXPECT_FLOAT_EQ(r.weights.item<float>(), 1.0f);
  // d p_1 / d logits = p_1 (onehot_1 - p) = 0.75 * (-0.25, 0.25).
  auto g = torch::autograd::grad({r.weights.sum()}, {logits})[0];
  EXPECT_TRUE(torch::allclose(g, torch::tensor({{-0.1875f, 0.1875f}}), 1e-6, 1e-7));
}

TEST(MoeRouting, SampleLevelRoutesWholeSequences) {
  // Two sequences of two tokens; sequence 0's mean logits favour expert 2, sequence 1's expert 0.
  auto logits = torch::tensor({{0.f, 1.f, 5.f}, {0.f, 2.f, 1.f}, {4.f, 0.f, 0.f}, {2.f, 3.f, 0.f}});
  auto r = route_sample(logits, 2, 2, 1);
  EXPECT_TRUE(torch::equal(r.experts.view({-1}), torch::tensor({2, 2, 0, 0}, torch::kInt64)));
  EXPECT_TRUE(torch::allclose(r.weights, torch::ones({4, 1})));
}

TEST(MoeRouting, HashOfTheTokenId) {
  // (id * 2654435761 mod 2^32) mod 4: id 0 -> 0, 1 -> 2654435761 mod 4 = 1,
  // 2 -> 5308871522 - 2^32 = 1013904226 mod 4 = 2.
  auto r = route_hash(torch::zeros({4, 4}), torch::tensor({0, 1, 2, 1}, torch::kInt64), 4);
  EXPECT_TRUE(torch::equal(r.experts.view({-1}), torch::tensor({0, 1, 2, 1}, torch::kInt64)));
  EXPECT_TRUE(torch::allclose(r.weights, torch::ones({4, 1})));
  // In a model the layers see the ids: the same token goes to the same expert in every layer.
  auto c = moe_config(4, 1, "hash");
  CausalLM m(c);
  m->eval();
  auto ids = torch::tensor({{5, 9, 5, 17}}, torch::kInt64);
  m->forward(ids);
  for (auto* l : routed_layers(m)) {
    auto e = l->last_routing()->experts.view({-1});
    EXPECT_EQ(e[0].item<int64_t>(), e[2].item<int64_t>());
  }
  // Tag routing without a label is refused.
  CausalLM t(moe_config(3, 1, "tag"));
  EXPECT_NE(testing::error_of([&] { t->forward(ids); }).find("domain label"), std::string::npos);
  force_experts(t, torch::tensor({2}));
  t->forward(ids);
  EXPECT_EQ(routed_layers(t)[0]->last_routing()->experts.view({-1})[3].item<int64_t>(), 2);
}

TEST(MoeLoadBalancing, SwitchFormulaByHand) {
  // 4 tokens, 2 experts, top-1. Tokens 0-2 go to expert 0, token 3 to expert 1: f = (3/4, 1/4).
  // probs rows: (0.9, 0.1) x3 and (0.2, 0.8): P = (0.725, 0.275).
  Routing r;
  r.probs = torch::tensor({{0.9f, 0.1f}, {0.9f, 0.1f}, {0.9f, 0.1f}, {0.2f, 0.8f}});
  r.experts = torch::tensor({{0}, {0}, {0}, {1}}, torch::kInt64);
  const double expected = 0.01 * 2 * (0.75 * 0.725 + 0.25 * 0.275);
  EXPECT_NEAR(load_balancing_loss(r, 2, 0.01).item<float>(), expected, 1e-7);
  // Perfectly balanced: alpha * k.
  Routing b;
  b.probs = torch::full({4, 2}, 0.5f);
  b.experts = torch::tensor({{0}, {1}, {0}, {1}}, torch::kInt64);
  EXPECT_NEAR(load_balancing_loss(b, 2, 0.01).item<float>(), 0.01, 1e-7);
  EXPECT_LT(load_balancing_loss(b, 2, 0.01).item<float>(), expected);
  // z-loss: logsumexp of (0, 0) is log 2.
  EXPECT_NEAR(router_z_loss(torch::zeros({3, 2}), 0.5).item<float>(),
              0.5 * std::log(2.0) * std::log(2.0), 1e-6);
}

TEST(MoeFfn, OneExpertTopOneIsTheDenseFfn) {
  torch::manual_seed(1);
  SwiGluMlpImpl mlp(8, 12);
  MoeFfnImpl moe(moe_config(1, 1));
  load_expert(moe, 0, mlp);
  auto x = torch::randn({2, 5, 8});
  EXPECT_TRUE(torch::allclose(moe.forward(x), mlp.forward(x), 1e-6, 1e-6));
}

TEST(MoeFfn, IdenticalExpertsGiveThatFfnForAnyRouter) {
  torch::manual_seed(2);
  SwiGluMlpImpl mlp(8, 12);
  for (const char* mode : {"top-k", "soft", "sample"}) {
    MoeFfnImpl moe(moe_config(4, 2, mode));
    for (int64_t e = 0; e < 4; ++e) load_expert(moe, e, mlp);
    torch::NoGradGuard ng;
    moe.gate->weight.normal_(0, 3.0);  // any router
    auto x = torch::randn({3, 4, 8});
    EXPECT_TRUE(torch::allclose(moe.forward(x), mlp.forward(x), 1e-5, 1e-6)) << mode;
  }
}

TEST(MoeFfn, GroupedDispatchEqualsNaiveForwardAndGradients) {
  for (const char* mode : {"top-k", "soft", "sample"}) {
    torch::manual_seed(3);
    MoeFfnImpl moe(moe_config(4, 2, mode));
    auto x = torch::randn({3, 5, 8}, torch::requires_grad());
    auto h = x.reshape({15, 8});
    auto r = moe.route(moe.gate(h), 3, 5);
    auto fast = dispatch_experts(moe.experts, h, r);
    auto slow = naive_moe(moe, h, r);
    EXPECT_TRUE(torch::allclose(fast, slow, 1e-5, 1e-6)) << mode;
    auto w = torch::randn_like(fast);
    auto g_fast = torch::autograd::grad(
        {(fast * w).sum()}, {x, moe.gate->weight, moe.experts[1]->as<MoeExpertImpl>()->w2->weight},
        {}, /*retain_graph=*/true);
    auto g_slow = torch::autograd::grad(
        {(slow * w).sum()}, {x, moe.gate->weight, moe.experts[1]->as<MoeExpertImpl>()->w2->weight});
    for (size_t i = 0; i < g_fast.size(); ++i) {
      EXPECT_TRUE(torch::allclose(g_fast[i], g_slow[i], 1e-4, 1e-6)) << mode << " grad " << i;
    }
  }
}

TEST(MoeFfn, UsageAuxLossAndActiveParams) {
  torch::manual_seed(4);
  MoeFfnImpl moe(moe_config(4, 2));
  moe.train();
  moe.forward(torch::randn({2, 6, 8}));
  EXPECT_TRUE(moe.aux_loss().defined());
  auto usage = moe.last_usage();  // fractions of tokens whose 2 experts include each: sum 2
  EXPECT_NEAR(usage.sum().item<double>(), 2.0, 1e-9);
  moe.eval();
  moe.forward(torch::randn({1, 3, 8}));
  EXPECT_FALSE(moe.aux_loss().defined());
  EXPECT_EQ(moe.active_params(), 4 * 8 + 2 * 3 * 8 * 12);
}

TEST(MoeModel, MixtralNamesConfigAndAuxLoss) {
  torch::manual_seed(5);
  CausalLM m(moe_config(3, 2));
  auto params = m->named_parameters();
  for (const char* name : {"model.layers.0.block_sparse_moe.gate.weight",
                           "model.layers.1.block_sparse_moe.experts.2.w1.weight",
                           "model.layers.1.block_sparse_moe.experts.0.w2.weight",
                           "model.layers.0.block_sparse_moe.experts.1.w3.weight"}) {
    EXPECT_TRUE(params.contains(name)) << name;
  }
  EXPECT_FALSE(params.contains("model.layers.0.mlp.gate_proj.weight"));
  EXPECT_EQ(model_config_to_json(m->config())["architectures"][0], "MixtralForCausalLM");
  m->train();
  auto loss = lm_loss(m, torch::randint(0, 30, {2, 9}));
  auto aux = m->aux_loss();
  ASSERT_TRUE(aux.defined());
  EXPECT_GT(aux.item<float>(), 0);
  (loss + aux).backward();
  EXPECT_TRUE(
      m->named_parameters()["model.layers.0.block_sparse_moe.gate.weight"].grad().defined());
  // Active parameters: per layer the router and 2 of 3 experts.
  const int64_t expert = 3 * 8 * 12;
  EXPECT_EQ(m->num_params() - m->num_active_params(), 2 * expert);
}

TEST(MoeModel, BadConfigsAreRefused) {
  auto c = moe_config(2, 3);
  EXPECT_NE(testing::error_of([&] { c.validate("x"); }).find("num_experts_per_tok 3"),
            std::string::npos);
  c = moe_config(2, 0);
  EXPECT_NE(testing::error_of([&] { c.validate("x"); }), "");
  c = moe_config(2, 1, "random");
  EXPECT_NE(testing::error_of([&] { c.validate("x"); }).find("router_mode 'random'"),
            std::string::npos);
  c = moe_config(0, 1);
  EXPECT_NE(testing::error_of([&] { c.validate("x"); }).find("num_local_experts"),
            std::string::npos);
}

}  // namespace
}  // namespace btx
