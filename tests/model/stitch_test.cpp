// Branch-Train-Stitch's stitched model (model/stitch.h): where stitches sit, one stitch against
// hand-computed values, and the stitched forward's invariants: at its start it is the hub when
// the experts are copies of it, a stitch that gives the hub all the weight ignores the experts,
// only the stitches get gradients, and its cost is N+1 models' less the unused LM heads.
#include "btx/model/stitch.h"

#include <gtest/gtest.h>

#include "model_util.h"

namespace btx {
namespace {

ModelConfig tiny_config() {
  return testing::small_model_config(40, 8, 16, 3, 2, 2, 32);
}

CausalLM fresh_model(uint64_t seed) {
  torch::manual_seed(seed);
  CausalLM m(tiny_config());
  m->init_weights();
  return m;
}

CausalLM copy_of(const CausalLM& m) {
  CausalLM c(m->config());
  torch::NoGradGuard no_grad;
  const auto from = m->named_parameters();
  for (auto& p : c->named_parameters()) p.value().copy_(from[p.key()]);
  return c;
}

TEST(StitchPoints, EveryLayersAndAlwaysTheLast) {
  EXPECT_EQ(stitch_points(4, 2), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(stitch_points(4, 1), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(stitch_points(5, 2), (std::vector<int64_t>{2, 4, 5}));
  EXPECT_EQ(stitch_points(4, 4), (std::vector<int64_t>{4}));
  EXPECT_THROW(stitch_points(4, 0), c10::Error);
}

TEST(Stitch, HandComputed) {
  // C = 2, N = 1. Gate logits G h + b = (0, ln 3) for h = (1, 2): weights (1/4, 3/4).
  Stitch s(2, 1, /*into_experts=*/true);
  torch::NoGradGuard no_grad;
  s->gate->weight.copy_(torch::tensor({{0.0f, 0.0f}, {std::log(3.0f), 0.0f}}));
  s->gate->bias.zero_();
  s->project.copy_(torch::tensor({{{0.0f, 1.0f}, {2.0f, 0.0f}}}));  // P e = (e1, 2 e0)
  auto h = torch::tensor({1.0f, 2.0f}).view({1, 1, 2});
  auto e = torch::tensor({3.0f, 5.0f}).view({1, 1, 1, 2});
  torch::Tensor g;
  auto out = s->into_hub(h, e, &g);
  // P e = (5, 6); out = 1/4 (1, 2) + 3/4 (5, 6) = (4, 5).
  EXPECT_TRUE(torch::allclose(out, torch::tensor({4.0f, 5.0f}).view({1, 1, 2}), 1e-5, 1e-6)) << out;
  EXPECT_TRUE(torch::allclose(g, torch::tensor({0.25f, 0.75f}).view({1, 1, 2}), 1e-6, 1e-6));
  // Hub into the expert: σ(a·h + c) with a = (0, 0), c = 0 -> 1/2; Q h = (h0 + h1, -h1).
  s->back.copy_(torch::tensor({{{1.0f, 1.0f}, {0.0f, -1.0f}}}));
  auto e2 = s->into_experts(out, e);
  // Q (4, 5) = (9, -5); e + 1/2 (9, -5) = (7.5, 2.5).
  EXPECT_TRUE(torch::allclose(e2, torch::tensor({7.5f, 2.5f}).view({1, 1, 1, 2}), 1e-5, 1e-6))
      << e2;
}

TEST(Stitch, StartsAsTheUniformMixAndLeavesTheExpertsAlone) {
  Stitch s(2, 2, true);
  auto h = torch::tensor({1.0f, 2.0f}).view({1, 1, 2});
  auto e = torch::tensor({{4.0f, 5.0f}, {7.0f, -1.0f}}).view({2, 1, 1, 2});
  auto out = s->into_hub(h, e);
  EXPECT_TRUE(torch::allclose(out, torch::tensor({4.0f, 2.0f}).view({1, 1, 2}), 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(s->into_experts(out, e), e));
  Stitch last(2, 2, false);
  EXPECT_FALSE(last->back.defined());
  EXPECT_THROW(last->into_experts(out, e), c10::Error);
}

TEST(StitchedLM, ExpertsThatAreCopiesOfTheHubStartAsTheHub) {
  CausalLM hub = fresh_model(1);
  StitchedLM m(hub, std::vector<CausalLM>{copy_of(hub), copy_of(hub)}, 2);
  EXPECT_EQ(m->points(), (std::vector<int64_t>{2, 3}));
  torch::NoGradGuard no_grad;
  auto ids = torch::randint(40, {2, 7}, torch::kInt64);
  std::vector<torch::Tensor> gates;
  auto logits = m->forward(ids, &gates);
  EXPECT_TRUE(torch::allclose(logits, hub->forward(ids), 1e-4, 1e-5));
  ASSERT_EQ(gates.size(), 2u);
  EXPECT_TRUE(torch::allclose(gates[0], torch::full({2, 7, 3}, 1.0 / 3)));
}

TEST(StitchedLM, AStitchThatGivesTheHubEverythingIgnoresTheExperts) {
  CausalLM hub = fresh_model(1);
  StitchedLM m(hub, std::vector<CausalLM>{fresh_model(2), fresh_model(3)}, 1);
  torch::NoGradGuard no_grad;
  for (auto& s : *m->stitches) s->as<StitchImpl>()->gate->bias[0] = 100.0;
  auto ids = torch::randint(40, {1, 5}, torch::kInt64);
  EXPECT_TRUE(torch::allclose(m->forward(ids), hub->forward(ids), 1e-4, 1e-5));
  // With the experts' own weight, they matter.
  for (auto& s : *m->stitches) s->as<StitchImpl>()->gate->bias[0] = 0.0;
  EXPECT_FALSE(torch::allclose(m->forward(ids), hub->forward(ids), 1e-3, 1e-3));
}

TEST(StitchedLM, OnlyTheStitchesGetGradients) {
  StitchedLM m(fresh_model(1), std::vector<CausalLM>{fresh_model(2)}, 2);
  auto tokens = torch::randint(40, {2, 9}, torch::kInt64);
  stitched_token_nll(m, tokens).mean().backward();
  for (const auto& p : m->hub->parameters()) EXPECT_FALSE(p.grad().defined());
  for (const auto& p : m->experts[0]->parameters()) EXPECT_FALSE(p.grad().defined());
  int64_t with_grad = 0;
  for (const auto& [name, p] : m->stitch_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    with_grad += p.grad().abs().sum().item<double>() > 0 ? 1 : 0;
  }
  EXPECT_GT(with_grad, 0);
  // Names as stitches.safetensors stores them; the last point has no hub-into-experts part.
  std::vector<std::string> names;
  for (const auto& [name, p] : m->stitch_parameters()) names.push_back(name);
  EXPECT_EQ(names,
            (std::vector<std::string>{
                "stitches.0.project", "stitches.0.back", "stitches.0.gate.weight",
                "stitches.0.gate.bias", "stitches.0.back_gate.weight", "stitches.0.back_gate.bias",
                "stitches.1.project", "stitches.1.gate.weight", "stitches.1.gate.bias"}));
}

TEST(StitchedLM, CostIsEveryModelLessTheExpertsHeadsPlusTheStitches) {
  CausalLM hub = fresh_model(1);
  StitchedLM m(hub, std::vector<CausalLM>{fresh_model(2), fresh_model(3)}, 2);
  const int64_t C = 8, N = 2, V = 40;
  // Two points: the first with both parts, the last with the gate and projections only.
  const int64_t first = N * C * C + (C * (N + 1) + N + 1) + N * C * C + (C * N + N);
  const int64_t last = N * C * C + (C * (N + 1) + N + 1);
  EXPECT_EQ(m->num_stitch_params(), first + last);
  EXPECT_EQ(m->num_params(), 3 * hub->num_params() + first + last);
  const int64_t per_model = forward_flops_per_token(hub, 16);
  EXPECT_EQ(m->flops_per_token(16), 3 * per_model - N * 2 * C * V + 2 * (first + last));
}

TEST(StitchedLM, RefusesExpertsOfAnotherShapeOrNone) {
  auto other = tiny_config();
  other.intermediate_size = 24;
  CausalLM wide(other);
  EXPECT_THROW(StitchedLM(fresh_model(1), std::vector<CausalLM>{wide}, 2), c10::Error);
  EXPECT_THROW(StitchedLM(fresh_model(1), std::vector<CausalLM>{}, 2), c10::Error);
}

}  // namespace
}  // namespace btx
