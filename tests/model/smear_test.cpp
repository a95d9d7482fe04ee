// The SMEAR FFN and the gradient-estimator router types: a one-hot router gives exactly that
// expert's FFN; identical experts give that FFN for any router; the batched per-sequence merge
// equals a per-example loop and the linear per-position form equals merging the weights per
// position (forward and gradients); the prefix router is causal and the sequence router is not;
// expert dropout renormalises; straight-through Gumbel and REINFORCE by hand.
#include "btx/model/smear.h"

#include <gtest/gtest.h>

#include "btx/model/llama.h"
#include "moe_util.h"
#include "test_util.h"

namespace btx {
namespace {

using testing::load_expert;

ModelConfig smear_config(int64_t experts, const std::string& mode = "prefix") {
  return testing::routed_config("smear", experts, experts, mode);
}

// The merged FFN of one probability vector p (E), by hand: W = Σ_e p_e W_e for each projection.
torch::Tensor merged_ffn(SmearFfnImpl& s, const torch::Tensor& x, const torch::Tensor& p) {
  auto w = stack_experts(s.experts);
  auto m = [&](const torch::Tensor& st) { return (p.view({-1, 1, 1}) * st).sum(0); };
  auto w1 = m(w.w1), w2 = m(w.w2), w3 = m(w.w3);
  return torch::matmul(torch::silu(torch::matmul(x, w1.t())) * torch::matmul(x, w3.t()), w2.t());
}

TEST(SmearFfn, OneHotRouterGivesThatExpertsFfn) {
  for (const char* mode : {"prefix", "sequence"}) {
    torch::manual_seed(1);
    SmearFfnImpl s(smear_config(3, mode));
    s.eval();
    auto x = torch::randn({2, 5, 8});
    for (int64_t e = 0; e < 3; ++e) {
      s.force_experts(torch::tensor({e}));
      auto expert = s.experts[e]->as<MoeExpertImpl>()->forward(x.reshape({10, 8})).view({2, 5, 8});
      EXPECT_TRUE(torch::allclose(s.forward(x), expert, 1e-5, 1e-6)) << mode << " expert " << e;
    }
    s.force_experts(torch::tensor({2, 0}));  // one expert per sequence
    auto out = s.forward(x);
    EXPECT_TRUE(
        torch::allclose(out[1], s.experts[0]->as<MoeExpertImpl>()->forward(x[1]), 1e-5, 1e-6))
        << mode;
  }
}

TEST(SmearFfn, IdenticalExpertsGiveThatFfnForAnyRouter) {
  torch::manual_seed(2);
  SwiGluMlpImpl mlp(8, 12);
  for (const char* mode : {"prefix", "sequence"}) {
    auto c = smear_config(4, mode);
    c.smear_expert_dropout = 0.5;
    SmearFfnImpl s(c);
    for (int64_t e = 0; e < 4; ++e) load_expert(s, e, mlp);
    {
      torch::NoGradGuard ng;
      s.gate->weight.normal_(0, 3.0);  // any router
    }
    auto x = torch::randn({3, 4, 8});
    for (bool training : {false, true}) {  // with expert dropout too: merge weights sum to 1
      s.train(training);
      EXPECT_TRUE(torch::allclose(s.forward(x), mlp.forward(x), 1e-5, 1e-6)) << mode;
    }
  }
}

TEST(SmearFfn, RouterInputIsTheNormalisedPrefixOrSequenceMean) {
  auto x = torch::tensor({1.0f, 3.0f, 3.0f, 1.0f, 2.0f, 2.0f}).view({1, 3, 2});
  auto p = smear_router_input(x, /*causal=*/true, 0.0);
  // Prefix means (1, 3), (2, 2), (2, 2); RMS sqrt(5), 2, 2.
  auto expected = torch::tensor({1 / std::sqrt(5.0f), 3 / std::sqrt(5.0f), 1.0f, 1.0f, 1.0f, 1.0f})
                      .view({1, 3, 2});
  EXPECT_TRUE(torch::allclose(p, expected, 1e-6, 1e-6));
  auto q = smear_router_input(x, /*causal=*/false, 0.0);
  ASSERT_EQ(q.sizes(), (std::vector<int64_t>{1, 1, 2}));
  EXPECT_TRUE(torch::allclose(q, torch::ones({1, 1, 2}), 1e-6, 1e-6));
}

TEST(SmearFfn, BatchedSequenceMergeEqualsPerExampleLoopWithGradients) {
  torch::manual_seed(3);
  SmearFfnImpl s(smear_config(3, "sequence"));
  auto x = torch::randn({4, 5, 8}, torch::requires_grad());
  auto logits = torch::randn({4, 3}, torch::requires_grad());
  auto p = torch::softmax(logits, -1);
  auto fast = smear_merge_per_sequence(x, p, stack_experts(s.experts));
  std::vector<torch::Tensor> rows;
  for (int64_t b = 0; b < 4; ++b) rows.push_back(merged_ffn(s, x[b], p[b]));
  auto slow = torch::stack(rows);
  EXPECT_TRUE(torch::allclose(fast, slow, 1e-5, 1e-6));
  auto w = torch::randn_like(fast);
  auto w1 = s.experts[1]->as<MoeExpertImpl>()->w1->weight;
  auto gf = torch::autograd::grad({(fast * w).sum()}, {x, logits, w1}, {}, true);
  auto gs = torch::autograd::grad({(slow * w).sum()}, {x, logits, w1});
  for (size_t i = 0; i < gf.size(); ++i) {
    EXPECT_TRUE(torch::allclose(gf[i], gs[i], 1e-4, 1e-6)) << "grad " << i;
  }
}

TEST(SmearFfn, LinearPerPositionFormEqualsMergingWeightsPerPosition) {
  torch::manual_seed(4);
  SmearFfnImpl s(smear_config(4));
  auto x = torch::randn({7, 8}, torch::requires_grad());
  auto logits = torch::randn({7, 4}, torch::requires_grad());
  auto p = torch::softmax(logits, -1);
  const auto w = stack_experts(s.experts);
  auto fast = smear_mix_per_position(x, p, w);
  auto slow = smear_merge_per_position(x, p, w, /*chunk=*/3);
  EXPECT_TRUE(torch::allclose(fast, slow, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(slow[2], merged_ffn(s, x[2], p[2]), 1e-5, 1e-6));
  auto g = torch::randn_like(fast);
  auto w2 = s.experts[3]->as<MoeExpertImpl>()->w2->weight;
  auto gf = torch::autograd::grad({(fast * g).sum()}, {x, logits, w2}, {}, true);
  auto gs = torch::autograd::grad({(slow * g).sum()}, {x, logits, w2});
  for (size_t i = 0; i < gf.size(); ++i) {
    EXPECT_TRUE(torch::allclose(gf[i], gs[i], 1e-4, 1e-6)) << "grad " << i;
  }
}

TEST(SmearFfn, PrefixRoutingIsCausalAndSequenceRoutingIsNot) {
  torch::manual_seed(5);
  for (const char* mode : {"prefix", "sequence"}) {
    auto c = smear_config(3, mode);
    c.num_hidden_layers = 2;
    CausalLM m(c);
    m->eval();
    torch::NoGradGuard ng;
    auto ids = torch::randint(0, 30, {1, 10});
    auto changed = ids.clone();
    changed.narrow(1, 6, 4).random_(0, 30);
    changed[0][6] = (ids[0][6].item<int64_t>() + 1) % 30;  // surely different at t = 6
    auto a = m->forward(ids), b = m->forward(changed);
    const bool same_prefix = torch::allclose(a.narrow(1, 0, 6), b.narrow(1, 0, 6), 1e-6, 1e-6);
    if (std::string(mode) == "prefix") {
      EXPECT_TRUE(same_prefix) << "position t must not see tokens after t";
    } else {
      EXPECT_FALSE(same_prefix) << "the sequence router sees the whole sequence";
    }
  }
}

TEST(SmearFfn, ExpertDropoutRenormalises) {
  torch::manual_seed(6);
  auto p = torch::softmax(torch::randn({200, 4}), -1);
  auto d = expert_dropout(p, 0.5);
  EXPECT_TRUE(torch::allclose(d.sum(-1), torch::ones({200}), 1e-5, 1e-6));
  auto dropped = (d == 0);
  EXPECT_GT(dropped.sum().item<int64_t>(), 100);  // about half of 800
  // Kept entries keep their ratios: d = p / (sum of kept p).
  auto kept = (~dropped).to(torch::kFloat32);
  auto expected = p * kept / (p * kept).sum(-1, true);
  auto all_gone = (kept.sum(-1, true) == 0).expand({200, 4});
  EXPECT_TRUE(torch::allclose(torch::where(all_gone, p, expected), d, 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(expert_dropout(p, 0.0), p));
  // (B, T, E): every position of a sequence drops the same experts.
  auto q = torch::softmax(torch::randn({8, 5, 4}), -1);
  auto dq = expert_dropout(q, 0.5);
  auto zeros = (dq == 0);
  EXPECT_TRUE(torch::equal(zeros, zeros.narrow(1, 0, 1).expand_as(zeros)));
  EXPECT_GT(zeros.sum().item<int64_t>(), 0);
  EXPECT_NE(testing::error_of([&] { expert_dropout(p, 1.0); }).find("[0, 1)"), std::string::npos);
}

TEST(SmearModel, NamesConfigActiveParamsAndFlops) {
  torch::manual_seed(7);
  CausalLM m(smear_config(3));
  auto params = m->named_parameters();
  for (const char* name :
       {"model.layers.0.smear.gate.weight", "model.layers.1.smear.experts.2.w1.weight",
        "model.layers.1.smear.experts.0.w2.weight"}) {
    EXPECT_TRUE(params.contains(name)) << name;
  }
  EXPECT_EQ(model_config_to_json(m->config())["architectures"][0], "BtxSmearForCausalLM");
  const int64_t expert = 3 * 8 * 12;
  EXPECT_EQ(m->num_params() - m->num_active_params(), 2 * 2 * expert);  // 2 layers, 2 of 3 idle
  // Causal SMEAR runs every expert's products on every token (the linear form).
  CausalLM seq(smear_config(3, "sequence"));
  const int64_t T = 16;
  EXPECT_EQ(forward_flops_per_token(m, T) - forward_flops_per_token(seq, T),
            2 * (2 * 3 * expert - 2 * expert - 2 * 3 * expert / T));
  m->train();
  lm_loss(m, torch::randint(0, 30, {2, 9})).backward();
  EXPECT_TRUE(params["model.layers.0.smear.gate.weight"].grad().defined());
  EXPECT_FALSE(m->aux_loss().defined());  // no load balancing
}

TEST(SmearModel, BadConfigsAreRefused) {
  auto c = smear_config(2, "top-k");
  EXPECT_NE(testing::error_of([&] { c.validate("x"); }).find("router_mode 'top-k'"),
            std::string::npos);
  c = smear_config(2);
  c.smear_expert_dropout = 1.0;
  EXPECT_NE(testing::error_of([&] { c.validate("x"); }).find("smear_expert_dropout"),
            std::string::npos);
  c = testing::routed_config("mixtral", 3, 2, "gumbel");
  EXPECT_NE(testing::error_of([&] { c.validate("x"); }).find("num_experts_per_tok must be 1"),
            std::string::npos);
}

TEST(GradientEstimators, StraightThroughGumbelIsOneForwardAndLearnsThroughTheSoftmax) {
  torch::manual_seed(8);
  auto logits = torch::randn({50, 4}, torch::requires_grad());
  auto r = route_gumbel(logits);
  EXPECT_TRUE(torch::allclose(r.weights, torch::ones({50, 1})));
  auto g = torch::autograd::grad({r.weights.sum()}, {logits})[0];
  EXPECT_GT(g.abs().sum().item<float>(), 0);  // the softmax's gradient reaches the router
  // The noise makes some choices differ from the argmax, but not most.
  auto agree = (r.experts.squeeze(1) == logits.argmax(1)).sum().item<int64_t>();
  EXPECT_LT(agree, 50);
  EXPECT_GT(agree, 10);
  // In evaluation the layer routes to the argmax with gate 1.
  MoeFfnImpl moe(testing::routed_config("mixtral", 4, 1, "gumbel"));
  moe.eval();
  auto h = torch::randn({6, 8});
  auto e = moe.route(moe.gate(h), 1, 6);
  EXPECT_TRUE(torch::equal(e.experts.squeeze(1), moe.gate(h).argmax(1)));
}

TEST(GradientEstimators, ReinforcePolicyLossByHand) {
  torch::manual_seed(9);
  MoeFfnImpl moe(testing::routed_config("mixtral", 3, 1, "reinforce"));
  ASSERT_TRUE(moe.baseline);
  EXPECT_TRUE(moe.named_parameters().contains("baseline.weight"));
  moe.train();
  auto x = torch::randn({1, 4, 8});
  moe.forward(x);
  const auto& r = *moe.last_routing();
  auto nll = torch::tensor({1.0f, 2.0f, 3.0f, 6.0f}).view({1, 4});
  auto loss = moe.policy_loss(nll);
  ASSERT_TRUE(loss.defined());
  // The baseline's learned part starts at zero: b = mean loss 3, advantages (-2, -1, 0, 3).
  auto logp = torch::log_softmax(r.logits, -1).gather(1, r.experts).squeeze(1);
  auto adv = torch::tensor({-2.0f, -1.0f, 0.0f, 3.0f});
  auto expected = (adv * logp).mean() + MoeFfnImpl::kBaselineLossWeight * adv.pow(2).mean();
  EXPECT_NEAR(loss.item<float>(), expected.item<float>(), 1e-5);
  loss.backward();
  // d/dlogits of mean_t adv_t log p(e_t) = adv_t (onehot(e_t) - p_t) / N; the router is linear
  // in h, so the gate's gradient is that, times h: a token with a loss below the baseline (adv
  // < 0) makes its expert more likely under gradient descent, one above it less likely.
  auto onehot = torch::one_hot(r.experts.squeeze(1), 3).to(torch::kFloat32);
  auto dlogits = (adv / 4.0).unsqueeze(1) * (onehot - r.probs);
  auto expected_grad = torch::matmul(dlogits.t(), x.reshape({4, 8}));
  EXPECT_TRUE(torch::allclose(moe.gate->weight.grad(), expected_grad, 1e-5, 1e-6));
  EXPECT_TRUE(moe.baseline->weight.grad().defined());
  // Expert weights get no gradient from the policy loss.
  EXPECT_FALSE(moe.experts[0]->as<MoeExpertImpl>()->w1->weight.grad().defined());
  moe.eval();
  moe.forward(x);
  EXPECT_FALSE(moe.policy_loss(nll).defined());
}

}  // namespace
}  // namespace btx
