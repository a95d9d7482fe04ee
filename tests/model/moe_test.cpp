// The MoE FFN against hand-computed routing and its invariants: one expert with k = 1 is the
// dense FFN it came from; identical experts give that FFN for any router; grouped dispatch equals
// running every expert on every token (forward and gradients); the Switch load-balancing loss by
// hand; HF Mixtral parameter names; sample-level routing shares one choice per sequence; null
// experts by hand (a token runs 0, 1 or 2 experts; an unchosen null slot changes nothing), their
// measured experts per token and their configs.
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

// Every way of multiplying (a loop over experts, one padded bmm per projection, grouped products
// where LibTorch has them, else their fallback) against a token-by-token reference.
TEST(MoeFfn, GroupedDispatchEqualsNaiveForwardAndGradients) {
  for (const char* mode : {"top-k", "soft", "sample"}) {
    for (const auto how : {ExpertProducts::kAuto, ExpertProducts::kLoop, ExpertProducts::kBatched,
                           ExpertProducts::kGrouped}) {
      torch::manual_seed(3);
      MoeFfnImpl moe(moe_config(4, 2, mode));
      auto x = torch::randn({3, 5, 8}, torch::requires_grad());
      auto h = x.reshape({15, 8});
      auto r = moe.route(moe.gate(h), 3, 5);
      auto fast = dispatch_experts(moe.experts, h, r, /*null_slots=*/false, how);
      auto slow = naive_moe(moe, h, r);
      EXPECT_TRUE(torch::allclose(fast, slow, 1e-5, 1e-6)) << mode << " " << static_cast<int>(how);
      auto w = torch::randn_like(fast);
      auto g_fast = torch::autograd::grad(
          {(fast * w).sum()},
          {x, moe.gate->weight, moe.experts[1]->as<MoeExpertImpl>()->w2->weight}, {},
          /*retain_graph=*/true);
      auto g_slow = torch::autograd::grad(
          {(slow * w).sum()},
          {x, moe.gate->weight, moe.experts[1]->as<MoeExpertImpl>()->w2->weight});
      for (size_t i = 0; i < g_fast.size(); ++i) {
        EXPECT_TRUE(torch::allclose(g_fast[i], g_slow[i], 1e-4, 1e-6))
            << mode << " " << static_cast<int>(how) << " grad " << i;
      }
    }
  }
  // An expert no token chose, and null slots: the padded products skip nothing they should not.
  torch::manual_seed(5);
  MoeFfnImpl moe(moe_config(4, 2));
  auto h = torch::randn({6, 8});
  auto r = route_top_k_null(torch::tensor({{5.f, 4.f, -9.f, -9.f},
                                           {5.f, -9.f, 4.f, -9.f},
                                           {5.f, 4.f, -9.f, -9.f},
                                           {-9.f, -9.f, -9.f, -9.f},
                                           {4.f, 5.f, -9.f, -9.f},
                                           {5.f, -9.f, -9.f, -9.f}}),
                            torch::tensor({{0.f}, {0.f}, {0.f}, {9.f}, {0.f}, {4.5f}}), 2, 2);
  const auto loop = dispatch_experts(moe.experts, h, r, true, ExpertProducts::kLoop);
  const auto batched = dispatch_experts(moe.experts, h, r, true, ExpertProducts::kBatched);
  EXPECT_TRUE(torch::allclose(loop, batched, 1e-5, 1e-6));
  EXPECT_TRUE(loop[3].abs().max().item<double>() == 0);  // two null slots: no expert
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

TEST(MoeNullExperts, HandComputedRouting) {
  // Token 0: logits (2, 1, 0), null 1.5 twice: slots (2, 1, 0, 1.5, 1.5); top-2 = expert 0 and a
  // null slot; the null's gate is 0 and expert 0's renormalised to 1.
  // Token 1: logits (0, 3, 2), null 1: top-2 = experts 1 and 2, gates softmax(3, 2) as usual.
  // Token 2: logits (-5, -5, -5), null 0: two null slots, no expert, gates 0.
  auto r = route_top_k_null(torch::tensor({{2.f, 1.f, 0.f}, {0.f, 3.f, 2.f}, {-5.f, -5.f, -5.f}}),
                            torch::tensor({{1.5f}, {1.f}, {0.f}}), 2, 2);
  ASSERT_EQ(r.probs.sizes(), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(r.experts[0][0].item<int64_t>(), 0);
  EXPECT_GE(r.experts[0][1].item<int64_t>(), 3);
  EXPECT_FLOAT_EQ(r.weights[0][0].item<float>(), 1.f);
  EXPECT_FLOAT_EQ(r.weights[0][1].item<float>(), 0.f);
  EXPECT_EQ(r.experts[1][0].item<int64_t>(), 1);
  EXPECT_EQ(r.experts[1][1].item<int64_t>(), 2);
  EXPECT_NEAR(r.weights[1][0].item<float>(), 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
  EXPECT_GE(r.experts[2].min().item<int64_t>(), 3);
  EXPECT_FLOAT_EQ(r.weights[2].abs().sum().item<float>(), 0.f);
  // The probabilities span every slot: token 2's nulls hold e^0 / (3 e^-5 + 2 e^0) each.
  EXPECT_NEAR(r.probs[2][4].item<float>(), 1.0 / (3 * std::exp(-5.0) + 2), 1e-6);
  // k = 1: the one gate is 1 for an expert, 0 for a null slot.
  auto one = route_top_k_null(torch::tensor({{2.f, 1.f}, {0.f, 0.f}}),
                              torch::tensor({{0.f}, {3.f}}), 1, 1);
  EXPECT_FLOAT_EQ(one.weights[0][0].item<float>(), 1.f);
  EXPECT_EQ(one.experts[1][0].item<int64_t>(), 2);
  EXPECT_FLOAT_EQ(one.weights[1][0].item<float>(), 0.f);
}

TEST(MoeNullExperts, ZeroOneOrTwoExpertsPerTokenAndMeasuredCompute) {
  torch::manual_seed(6);
  ModelConfig c = moe_config(4, 2);
  c.num_null_experts = 4;
  MoeFfnImpl moe(c);
  ASSERT_TRUE(moe.null_gate);
  MoeFfnImpl plain(moe_config(4, 2));
  {
    torch::NoGradGuard ng;
    for (auto& p : plain.named_parameters()) p.value().copy_(moe.named_parameters()[p.key()]);
  }
  moe.eval();
  const auto x = torch::randn({2, 6, 8});
  const int64_t expert = 3 * 8 * 12;
  torch::NoGradGuard ng;
  // The null logit 0, the real ones large: a token's top-2 holds a null slot exactly where
  // fewer than two of its real logits are positive.
  moe.null_gate->weight.zero_();
  moe.gate->weight.normal_(0, 100.0);
  plain.gate->weight.copy_(moe.gate->weight);
  const auto out = moe.forward(x);
  const auto& r = *moe.last_routing();
  ASSERT_EQ(r.probs.size(1), 5);  // four experts and one null column
  const auto h = x.reshape({12, 8});
  const auto logits = moe.gate(h);
  const auto positive = logits.gt(0).sum(1).clamp_max(2);  // experts each token runs
  EXPECT_TRUE(torch::equal(r.experts.lt(4).sum(1), positive));
  EXPECT_NEAR(*moe.measured_experts_per_token(), positive.to(torch::kFloat64).mean().item<double>(),
              1e-12);
  EXPECT_EQ(moe.active_params(),
            4 * 8 + 8 + std::llround(*moe.measured_experts_per_token() * expert));
  // Tokens with two positive logits compute exactly the plain MoE; those with none output 0.
  const auto want = plain.forward(x).reshape({12, 8});
  const auto got = out.reshape({12, 8});
  for (int64_t t = 0; t < 12; ++t) {
    const int64_t n = positive[t].item<int64_t>();
    if (n == 2) {
      EXPECT_TRUE(torch::allclose(got[t], want[t], 1e-5, 1e-5)) << t;
    }
    if (n == 0) {
      EXPECT_EQ(got[t].abs().sum().item<float>(), 0.f) << t;
    }
    if (n == 1) {  // the one expert with gate 1
      const int64_t e = logits[t].argmax().item<int64_t>();
      const auto y = moe.experts[e]->as<MoeExpertImpl>()->forward(h[t].unsqueeze(0))[0];
      EXPECT_TRUE(torch::allclose(got[t], y, 1e-5, 1e-5)) << t;
    }
  }
  // Before any evaluation forward: balanced routing's k N / (N + M) = 1 expert per token.
  MoeFfnImpl fresh(c);
  EXPECT_EQ(fresh.active_params(), 4 * 8 + 8 + expert);
}

TEST(MoeNullExperts, BalancingCountsEverySlotAndTheNullRowTrains) {
  torch::manual_seed(7);
  ModelConfig c = moe_config(2, 2);
  c.num_null_experts = 2;
  CausalLM m(c);
  m->train();
  auto loss = lm_loss(m, torch::randint(0, 30, {2, 9}));
  auto aux = m->aux_loss();
  ASSERT_TRUE(aux.defined());
  (loss + aux).backward();
  // The null row learns from the load-balancing loss over all N + M slots.
  const auto g = m->named_parameters()["model.layers.0.block_sparse_moe.null_gate.weight"].grad();
  ASSERT_TRUE(g.defined());
  EXPECT_GT(g.abs().sum().item<float>(), 0.f);
  // Balanced over four slots (one token each way): α · 4 · Σ f P with f = 2/4, P = 1/4 each.
  Routing b;
  b.probs = torch::full({2, 4}, 0.25f);
  b.experts = torch::tensor({{0, 1}, {2, 3}}, torch::kInt64);
  EXPECT_NEAR(load_balancing_loss(b, 4, 0.01).item<float>(), 0.01 * 4 * 4 * 0.5 * 0.25, 1e-7);
}

TEST(MoeNullExperts, ConfigsThatCannotHaveThemAreRefused) {
  auto c = moe_config(2, 2, "soft");
  c.num_null_experts = 2;
  EXPECT_NE(testing::error_of([&] { c.validate("x"); }).find("needs router_mode top-k"),
            std::string::npos);
  ModelConfig dense = testing::small_model_config(30, 8, 12, 2, 2, 2);
  dense.num_null_experts = 1;
  EXPECT_NE(testing::error_of([&] { dense.validate("x"); }).find("needs a mixture of experts"),
            std::string::npos);
  c = moe_config(2, 2);
  c.num_null_experts = -1;
  EXPECT_NE(testing::error_of([&] { c.validate("x"); }).find("num_null_experts must be >= 0"),
            std::string::npos);
  // config.json keeps them.
  c.num_null_experts = 3;
  EXPECT_EQ(model_config_from_json(model_config_to_json(c), "x").num_null_experts, 3);
}

// MetaMoE's context-aware router input: with λ = sigmoid(context_mix) the router reads
// (1-λ)·h_t + λ·mean(h_0..t); λ -> 0 is the plain router; incremental decoding carries the prefix
// sum and gives the full forward's logits; the config refuses it without a learned causal router.
TEST(MoeContextRouter, ReadsTheHiddenStateMixedWithItsPrefixMean) {
  torch::manual_seed(8);
  ModelConfig c = moe_config(4, 2);
  c.router_context = true;
  MoeFfnImpl moe(c);
  ASSERT_TRUE(moe.context_mix.defined());
  EXPECT_FLOAT_EQ(moe.context_mix.item<float>(), -2.f);
  MoeFfnImpl plain(moe_config(4, 2));
  torch::NoGradGuard ng;
  for (auto& p : plain.named_parameters()) p.value().copy_(moe.named_parameters()[p.key()]);
  moe.eval();
  plain.eval();
  const auto x = torch::randn({2, 5, 8});
  // λ = 1/2: the router's logits are gate((h_t + mean_{s<=t} h_s) / 2), by hand.
  moe.context_mix.fill_(0.0);
  moe.forward(x);
  const auto mean = x.cumsum(1) / torch::arange(1, 6, torch::kFloat).reshape({1, 5, 1});
  const auto want = moe.gate((0.5 * x + 0.5 * mean).reshape({10, 8}));
  EXPECT_TRUE(torch::allclose(moe.last_routing()->logits, want, 1e-5, 1e-6));
  // λ -> 0: the plain router.
  moe.context_mix.fill_(-60.0);
  EXPECT_TRUE(torch::allclose(moe.forward(x), plain.forward(x), 1e-5, 1e-6));
  // The first position's prefix is itself: any λ routes it as the plain router does.
  moe.context_mix.fill_(1.0);
  moe.forward(x);
  EXPECT_TRUE(torch::allclose(moe.last_routing()->logits.narrow(0, 0, 1),
                              plain.gate(x[0].narrow(0, 0, 1)), 1e-5, 1e-6));
}

TEST(MoeContextRouter, CachedDecodingEqualsTheFullForward) {
  torch::manual_seed(9);
  for (int64_t nulls : {0, 2}) {
    ModelConfig c = moe_config(3, 2);
    c.router_context = true;
    c.num_null_experts = nulls;
    CausalLM m(c);
    m->eval();
    torch::NoGradGuard ng;
    const auto ids = torch::randint(0, 30, {2, 12}, torch::kInt64);
    KVCache cache;
    const auto first = m->forward_cached(ids.narrow(1, 0, 7), cache);
    const auto rest = m->forward_cached(ids.narrow(1, 7, 5), cache);
    EXPECT_LT((torch::cat({first, rest}, 1) - m->forward(ids)).abs().max().item<double>(), 1e-5)
        << nulls;
  }
  // A router that does not learn, or reads the whole sequence, cannot take it.
  for (const char* mode : {"hash", "sample"}) {
    ModelConfig bad = moe_config(3, mode == std::string("hash") ? 1 : 2, mode);
    bad.router_context = true;
    EXPECT_NE(testing::error_of([&] { bad.validate("x"); }).find("router_context needs"),
              std::string::npos)
        << mode;
  }
  ModelConfig dense = testing::small_model_config(30, 8, 12, 2, 2, 2);
  dense.router_context = true;
  EXPECT_NE(testing::error_of([&] { dense.validate("x"); }).find("router_context needs"),
            std::string::npos);
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
