// BTM's ensemble against hand-computed cases: Bayes' rule over the prefix, top-k renormalisation,
// the cached prior's moving average; and its invariants on real (tiny, random) models: a proper
// distribution at every position, identical experts give the single model back, top-1 of a
// cached prior is the chosen expert alone, and the per-domain posterior average.
#include "btx/eval/ensemble.h"

#include <gtest/gtest.h>

#include <cmath>

#include "btx/util/error.h"
#include "model_util.h"
#include "test_util.h"

namespace btx {
namespace {

ModelConfig tiny_config() {
  return testing::small_model_config(40, 16, 24, 2, 4, 2, 32);
}

std::vector<CausalLM> random_models(int n, uint64_t seed = 1) {
  std::vector<CausalLM> out;
  for (int i = 0; i < n; ++i) {
    torch::manual_seed(seed + i);
    out.emplace_back(tiny_config());
    out.back()->eval();
  }
  return out;
}

CausalLM copy_of(const CausalLM& m) {
  CausalLM c(m->config());
  torch::NoGradGuard ng;
  auto src = m->parameters();
  auto dst = c->parameters();
  for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  c->eval();
  return c;
}

std::vector<std::string> names(size_t n) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) out.push_back("e" + std::to_string(i));
  return out;
}

torch::Tensor tokens(int64_t B, int64_t T, uint64_t seed = 9) {
  torch::manual_seed(seed);
  return torch::randint(0, 40, {B, T}, torch::kInt64);
}

torch::Tensor uniform_log_prior(int64_t E) {
  return torch::full({E}, -std::log(static_cast<double>(E)), torch::kFloat64);
}

TEST(EnsembleWeights, UpdatingPriorIsBayesRuleOverThePrefix) {
  // Expert A gives every token p = 0.5, expert B p = 0.25. Before any evidence the posterior is
  // the uniform prior; after one token A : B = 0.5 : 0.25 -> 2/3; after two 0.25 : 0.0625 -> 0.8.
  auto ll = torch::stack({torch::full({1, 3}, std::log(0.5), torch::kFloat64),
                          torch::full({1, 3}, std::log(0.25), torch::kFloat64)});
  auto w = ensemble_log_weights(ll, EnsemblePrior::kUpdating, uniform_log_prior(2), 0).exp();
  EXPECT_NEAR(w[0][0][0].item<double>(), 0.5, 1e-12);
  EXPECT_NEAR(w[0][0][1].item<double>(), 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(w[0][0][2].item<double>(), 0.8, 1e-12);
  EXPECT_NEAR(w[1][0][2].item<double>(), 0.2, 1e-12);
  // The mixture at t = 1: 2/3 * 0.5 + 1/3 * 0.25.
  auto p = mix_log_probs(w.log(), ll).exp();
  EXPECT_NEAR(p[0][1].item<double>(), 2.0 / 3.0 * 0.5 + 1.0 / 3.0 * 0.25, 1e-12);
  // A non-uniform starting prior 0.2 : 0.8 enters Bayes' rule: after one token
  // 0.2 * 0.5 : 0.8 * 0.25 = 1 : 2.
  auto w2 = ensemble_log_weights(ll, EnsemblePrior::kUpdating,
                                 torch::tensor({std::log(0.2), std::log(0.8)}, torch::kFloat64), 0)
                .exp();
  EXPECT_NEAR(w2[0][0][1].item<double>(), 1.0 / 3.0, 1e-12);
}

TEST(EnsembleWeights, FixedPriorsIgnoreTheEvidence) {
  auto ll = torch::randn({3, 2, 5}, torch::kFloat64);
  auto prior = torch::tensor({0.5, 0.3, 0.2}, torch::kFloat64);
  for (auto mode : {EnsemblePrior::kUniform, EnsemblePrior::kCached}) {
    auto w = ensemble_log_weights(ll, mode, prior.log(), 0).exp();
    EXPECT_TRUE(torch::allclose(w, prior.view({3, 1, 1}).expand({3, 2, 5})));
  }
}

TEST(EnsembleWeights, TopKKeepsTheLargestAndRenormalises) {
  auto ll = torch::zeros({3, 1, 1}, torch::kFloat64);
  auto prior = torch::tensor({0.5, 0.3, 0.2}, torch::kFloat64);
  auto w = ensemble_log_weights(ll, EnsemblePrior::kCached, prior.log(), 2).exp().view({3});
  EXPECT_NEAR(w[0].item<double>(), 0.625, 1e-12);
  EXPECT_NEAR(w[1].item<double>(), 0.375, 1e-12);
  EXPECT_EQ(w[2].item<double>(), 0.0);
}

TEST(EnsembleWeights, CachedPriorIsAnEmaOfSequencePosteriors) {
  // Sequence 1: likelihoods 1 : 3 -> posterior (0.25, 0.75); sequence 2: (1, ~0).
  // EMA with alpha 0.5 from (0.5, 0.5): (0.375, 0.625), then (0.6875, 0.3125).
  auto seq_ll = torch::tensor({{0.0, 0.0}, {std::log(3.0), -1000.0}}, torch::kFloat64);
  auto prior = cached_prior_from_loglik(seq_ll, 0.5);
  EXPECT_NEAR(prior[0].item<double>(), 0.6875, 1e-12);
  EXPECT_NEAR(prior[1].item<double>(), 0.3125, 1e-12);
}

TEST(EnsembleScorer, ProperDistributionAtEveryPosition) {
  auto experts = random_models(3);
  auto x = tokens(2, 12);
  struct Case {
    EnsemblePrior prior;
    int64_t k;
  };
  for (auto c : {Case{EnsemblePrior::kUniform, 0}, Case{EnsemblePrior::kUpdating, 0},
                 Case{EnsemblePrior::kUpdating, 2}, Case{EnsemblePrior::kCached, 1},
                 Case{EnsemblePrior::kCached, 2}, Case{EnsemblePrior::kCached, 0}}) {
    EnsembleScorer e(names(3), experts, {c.prior, c.k, 0.3, 4});
    if (c.prior == EnsemblePrior::kCached) e.set_prior(torch::tensor({0.2, 0.5, 0.3}));
    auto lp = e.log_probs(x);  // (B, T, V)
    ASSERT_EQ(lp.sizes(), (std::vector<int64_t>{2, 12, 40}));
    auto sums = lp.to(torch::kFloat64).exp().sum(-1);
    EXPECT_TRUE(torch::allclose(sums, torch::ones_like(sums), 1e-5, 1e-5))
        << to_string(c.prior) << " top-" << c.k;
    // token_nll is the same mixture read at the targets.
    auto nll = e.token_nll(x);  // targets x[:, 1:]
    auto picked = -lp.narrow(1, 0, 11).gather(2, x.narrow(1, 1, 11).unsqueeze(-1)).squeeze(-1);
    EXPECT_TRUE(torch::allclose(nll, picked, 1e-4, 1e-5)) << to_string(c.prior) << " top-" << c.k;
  }
}

TEST(EnsembleScorer, IdenticalExpertsGiveTheSingleModel) {
  auto base = random_models(1, 5)[0];
  auto x = tokens(3, 10, 4);
  auto single = btx::token_nll(base, x);
  for (auto prior : {EnsemblePrior::kUniform, EnsemblePrior::kUpdating, EnsemblePrior::kCached}) {
    for (int64_t k : {0, 1, 2}) {
      if (prior == EnsemblePrior::kUniform && k != 0) continue;
      EnsembleScorer e(names(3), {copy_of(base), copy_of(base), copy_of(base)}, {prior, k, 0.3, 4});
      if (prior == EnsemblePrior::kCached) {
        e.begin_domain("d", [&](int64_t n) { return tokens(n, 11, 6); });
      }
      EXPECT_TRUE(torch::allclose(e.token_nll(x), single, 1e-5, 1e-6))
          << to_string(prior) << " top-" << k;
    }
  }
}

TEST(EnsembleScorer, TopOneOfCachedPriorIsTheChosenExpertAlone) {
  auto experts = random_models(3, 11);
  auto x = tokens(2, 9, 3);
  EnsembleScorer e(names(3), experts, {EnsemblePrior::kCached, 1, 0.3, 4});
  e.set_prior(torch::tensor({0.1, 0.7, 0.2}));
  EXPECT_EQ(e.active_experts(), std::vector<int64_t>{1});
  EXPECT_TRUE(torch::equal(e.token_nll(x), btx::token_nll(experts[1], x)));
  EXPECT_EQ(e.params_active(), experts[1]->num_params());
  EXPECT_EQ(e.params_total(), 3 * experts[1]->num_params());
  EXPECT_EQ(e.flops_per_token(8), forward_flops_per_token(experts[1], 8));
  EXPECT_EQ(e.domain_info()["experts_run"], nlohmann::json::array({"e1"}));
}

TEST(EnsembleScorer, CachedPriorComesFromTheDomainsHeldOutText) {
  // Expert 0 is trained-free noise; expert 1 is a copy of expert 0 with a much sharper output on
  // token 7: held-out text made only of token 7 must pull the prior to expert 1.
  auto experts = random_models(2, 21);
  {
    torch::NoGradGuard ng;
    auto p = experts[1]->named_parameters();
    for (auto& kv : p) {
      if (kv.key() == "lm_head.weight" || kv.key() == "model.embed_tokens.weight") {
        kv.value()[7].fill_(2.0);
      }
    }
  }
  EnsembleScorer e(names(2), experts, {EnsemblePrior::kCached, 0, 0.3, 16});
  EXPECT_NE(testing::error_of([&] { e.token_nll(tokens(1, 5)); }), "");  // no domain yet
  e.begin_domain("sevens", [](int64_t n) { return torch::full({n, 9}, 7, torch::kInt64); });
  auto prior = e.prior();
  EXPECT_NEAR(prior.sum().item<double>(), 1.0, 1e-12);
  // 16 sequences, each with a posterior of ~1 for expert 1: 1 - 0.5 * 0.7^16 = 0.9983.
  EXPECT_NEAR(prior[1].item<double>(), 1 - 0.5 * std::pow(0.7, 16), 1e-3);
  EXPECT_NEAR(e.domain_info()["prior"]["e1"].get<double>(), prior[1].item<double>(), 1e-12);
}

TEST(EnsembleScorer, BadOptionsAreRefused) {
  auto experts = random_models(2);
  EXPECT_NE(testing::error_of([&] {
              EnsembleScorer(names(2), experts, {EnsemblePrior::kCached, 3, 0.3, 4});
            }).find("larger than the number of experts"),
            std::string::npos);
  EXPECT_NE(testing::error_of([&] {
              EnsembleScorer(names(2), experts, {EnsemblePrior::kUniform, 1, 0.3, 4});
            }).find("uniform"),
            std::string::npos);
  EXPECT_NE(testing::error_of([&] {
              EnsembleScorer(names(2), experts, {EnsemblePrior::kCached, 0, 1.5, 4});
            }).find("alpha"),
            std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_ensemble_prior("sometimes"); }).find("uniform, updating"),
            std::string::npos);
  EnsembleScorer e(names(2), experts, {EnsemblePrior::kCached, 0, 0.3, 4});
  EXPECT_NE(testing::error_of([&] { e.set_prior(torch::tensor({0.0, 0.0})); }), "");
  EXPECT_NE(testing::error_of([&] { e.set_prior(torch::tensor({-1.0, 2.0})); }), "");
}

// The cluster prior (c-BTM): the weights its context router gives at each position mix the
// experts there, top-k per position; the router's cost is added; its mean weights are reported.
TEST(EnsembleScorer, ClusterPriorMixesByTheContextRoutersWeightsAtEachPosition) {
  auto experts = random_models(3);
  torch::manual_seed(4);
  const auto tokens = torch::randint(0, 40, {2, 9});
  const auto inputs = tokens.narrow(1, 0, 8);
  // Even positions lean to expert 0, odd ones to expert 2: (0.7, 0.2, 0.1) and (0.1, 0.2, 0.7).
  auto router = [](const torch::Tensor& in) {
    const int64_t B = in.size(0), T = in.size(1);
    auto w = torch::empty({3, B, T}, torch::kFloat64);
    for (int64_t t = 0; t < T; ++t) {
      const bool even = t % 2 == 0;
      w.select(2, t).select(0, 0).fill_(even ? 0.7 : 0.1);
      w.select(2, t).select(0, 1).fill_(0.2);
      w.select(2, t).select(0, 2).fill_(even ? 0.1 : 0.7);
    }
    return w.log();
  };
  // Each expert's probability of each next token, by hand.
  std::vector<torch::Tensor> p;
  for (auto& m : experts) p.push_back((-token_nll(m, tokens)).exp().to(torch::kFloat64));
  for (int64_t k : {0, 1}) {
    SCOPED_TRACE(k);
    EnsembleOptions o{EnsemblePrior::kCluster, k, 0.3, 4};
    o.cluster_model = "clusters";
    EnsembleScorer e(names(3), experts, o);
    e.set_context_router(
        router, [](int64_t context) { return 1000 + context; }, 7);
    e.begin_domain("d", {});
    const auto nll = e.token_nll(tokens).to(torch::kFloat64);
    for (int64_t t = 0; t < 8; ++t) {
      const bool even = t % 2 == 0;
      const auto want = k == 1 ? (even ? p[0] : p[2]).select(1, t)
                               : (even ? 0.7 * p[0] + 0.2 * p[1] + 0.1 * p[2]
                                       : 0.1 * p[0] + 0.2 * p[1] + 0.7 * p[2])
                                     .select(1, t);
      EXPECT_TRUE(torch::allclose(nll.select(1, t), -want.log(), 1e-5, 1e-6)) << t;
    }
    // Every expert runs (the choice changes per position), and the router's cost is added.
    EXPECT_EQ(e.flops_per_token(16), 3 * forward_flops_per_token(experts[0], 16) + 1016);
    EXPECT_EQ(e.params_total(), 3 * experts[0]->num_params() + 7);
    const auto info = e.domain_info();
    EXPECT_EQ(info["prior_mode"], "cluster");
    const double w0 = k == 1 ? 0.5 : (0.7 + 0.1) / 2;
    EXPECT_NEAR(info["mean_weights"]["e0"].get<double>(), w0, 1e-9);
  }
  // Without its router, or without a cluster model, it is refused.
  EnsembleOptions o{EnsemblePrior::kCluster, 0, 0.3, 4};
  EXPECT_NE(testing::error_of([&] {
              EnsembleScorer(names(3), experts, o);
            }).find("needs --cluster-model"),
            std::string::npos);
  o.cluster_model = "clusters";
  EnsembleScorer bare(names(3), experts, o);
  EXPECT_NE(testing::error_of([&] { bare.token_nll(tokens); }).find("no cluster model"),
            std::string::npos);
  EnsembleOptions cached{EnsemblePrior::kCached, 0, 0.3, 4};
  cached.cluster_model = "clusters";
  EXPECT_NE(testing::error_of([&] {
              EnsembleScorer(names(3), experts, cached);
            }).find("read by the cluster prior only"),
            std::string::npos);
}

TEST(AverageModels, HandMadeWeights) {
  auto models = random_models(2);
  {
    torch::NoGradGuard ng;
    for (auto& p : models[0]->parameters()) p.fill_(1.0);
    for (auto& p : models[1]->parameters()) p.fill_(3.0);
  }
  auto avg = average_models(models, torch::tensor({0.75, 0.25}));
  for (const auto& p : avg->parameters()) {
    EXPECT_TRUE(torch::allclose(p, torch::full_like(p, 1.5)));
  }
}

TEST(PosteriorAverageScorer, IdenticalExpertsGiveTheSingleModel) {
  auto base = random_models(1, 8)[0];
  PosteriorAverageScorer s(names(2), {copy_of(base), copy_of(base)}, 0.3, 4);
  s.begin_domain("d", [](int64_t n) { return tokens(n, 9, 2); });
  auto x = tokens(2, 8, 1);
  EXPECT_TRUE(torch::allclose(s.token_nll(x), btx::token_nll(base, x), 1e-5, 1e-6));
  auto w = s.domain_info()["weights"];
  EXPECT_NEAR(w["e0"].get<double>() + w["e1"].get<double>(), 1.0, 1e-12);
}

}  // namespace
}  // namespace btx
