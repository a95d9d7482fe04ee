// The router table (model/router.h) against itself and against the models it describes: the
// table is in enum order and every kind is found by its name; its traits are consistent (what
// caches is causal, what exports is a causal MoE router, what needs labels is not learned); and
// for every kind, a model built with it behaves as its row says: causal kinds' logits at t do
// not move when later tokens change while the others' do, cacheable kinds decode incrementally
// to the full forward's logits, and the others refuse a cache.
#include "btx/model/router.h"

#include <gtest/gtest.h>

#include <set>

#include "btx/model/llama.h"
#include "btx/model/moe.h"
#include "moe_util.h"
#include "test_util.h"

namespace btx {
namespace {

using testing::routed_config;

TEST(RouterTable, IsInEnumOrderAndFindsEveryKindByName) {
  const auto& table = router_table();
  ASSERT_EQ(table.size(), 9u);
  std::set<std::pair<std::string, std::string>> seen;
  for (size_t i = 0; i < table.size(); ++i) {
    const auto& r = table[i];
    EXPECT_EQ(static_cast<size_t>(r.kind), i) << r.name;
    EXPECT_EQ(&router_traits(r.kind), &r);
    EXPECT_EQ(&router_traits(r.model_type, r.name, "x"), &r);
    EXPECT_TRUE(seen.insert({name_of(r.model_type), r.name}).second) << "twice: " << r.name;
  }
  EXPECT_EQ(
      router_names(ModelType::kMixtral),
      (std::vector<std::string>{"top-k", "soft", "sample", "hash", "tag", "gumbel", "reinforce"}));
  EXPECT_EQ(router_names(ModelType::kMixtral, /*learned_only=*/true),
            (std::vector<std::string>{"top-k", "soft", "sample", "gumbel", "reinforce"}));
  EXPECT_EQ(router_names(ModelType::kSmear), (std::vector<std::string>{"prefix", "sequence"}));
  EXPECT_TRUE(router_names(ModelType::kLlama).empty());
}

TEST(RouterTable, UnknownNamesAreErrorsListingTheKindsOfTheirModelType) {
  EXPECT_EQ(testing::error_of([] { router_traits(ModelType::kMixtral, "random", "cfg.json"); }),
            "cfg.json: router_mode 'random' is not one of top-k, soft, sample, hash, tag, gumbel, "
            "reinforce");
  EXPECT_EQ(testing::error_of([] { router_traits(ModelType::kSmear, "top-k", "cfg.json"); }),
            "cfg.json: SMEAR router_mode 'top-k' is not one of prefix, sequence");
  EXPECT_NE(testing::error_of([] {
              router_traits(ModelType::kLlama, "top-k", "cfg.json");
            }).find("no router"),
            std::string::npos);
}

TEST(RouterTable, TraitsAreConsistent) {
  for (const auto& r : router_table()) {
    const bool smear = r.model_type == ModelType::kSmear;
    EXPECT_TRUE(smear || r.model_type == ModelType::kMixtral) << r.name;
    if (r.cacheable) {
      EXPECT_TRUE(r.causal) << r.name << ": cached but reads later tokens";
    }
    if (r.hf != HfRouting::kNone) {
      EXPECT_FALSE(smear) << r.name;
      EXPECT_TRUE(r.causal && r.learned && !r.needs_labels) << r.name;
    }
    if (r.needs_labels) {
      EXPECT_FALSE(r.learned) << r.name;
    }
    EXPECT_EQ(r.experts == ExpertsPerToken::kMerged, smear) << r.name;
    EXPECT_EQ(r.training == RouterTraining::kMergeWeights, smear) << r.name;
    EXPECT_EQ(r.training == RouterTraining::kFixed, !r.learned) << r.name;
    EXPECT_EQ(r.balanced(), r.learned && !smear) << r.name;
  }
}

// A tiny model routed by `r`, its routers scaled up so that routing shows in the logits.
CausalLM model_with(const RouterTraits& r) {
  const bool smear = r.model_type == ModelType::kSmear;
  const int64_t k = r.experts == ExpertsPerToken::kTopK  ? 2
                    : r.experts == ExpertsPerToken::kOne ? 1
                                                         : 3;
  ModelConfig c = routed_config(name_of(r.model_type), 3, smear ? 3 : k, r.name);
  torch::manual_seed(11);
  CausalLM m(c);
  torch::NoGradGuard no_grad;
  for (auto& p : m->named_parameters()) {
    if (p.key().find(".gate.") != std::string::npos) p.value().mul_(40.0);
  }
  if (r.needs_labels) force_experts(m, torch::tensor({1}, torch::kInt64));
  m->eval();
  return m;
}

TEST(RouterTable, EveryKindsModelIsAsCausalAndCacheableAsItsRowSays) {
  torch::NoGradGuard no_grad;
  for (const auto& r : router_table()) {
    CausalLM m = model_with(r);
    EXPECT_EQ(m->config().is_causal(), r.causal) << r.name;
    EXPECT_EQ(m->supports_cache(), r.cacheable) << r.name;
    EXPECT_EQ(&m->config().router(), &r);
    // Change the tokens after position 4 and see whether positions <= 4 move.
    auto a = torch::randint(0, 30, {2, 12}, torch::kInt64);
    auto b = a.clone();
    b.narrow(1, 5, 7).copy_(torch::randint(0, 30, {2, 7}, torch::kInt64));
    const double moved =
        (m->forward(a).narrow(1, 0, 5) - m->forward(b).narrow(1, 0, 5)).abs().max().item<double>();
    if (r.causal) {
      EXPECT_LT(moved, 1e-6) << r.name << " is listed as causal";
    } else {
      EXPECT_GT(moved, 1e-4) << r.name << " is listed as not causal";
    }
    if (r.cacheable) {
      KVCache cache;
      auto first = m->forward_cached(a.narrow(1, 0, 7), cache);
      auto rest = m->forward_cached(a.narrow(1, 7, 5), cache);
      EXPECT_LT((torch::cat({first, rest}, 1) - m->forward(a)).abs().max().item<double>(), 1e-5)
          << r.name;
    } else {
      KVCache cache;
      EXPECT_THROW(m->forward_cached(a, cache), std::exception) << r.name;
    }
  }
}

TEST(RouterTable, ActiveParametersFollowExpertsPerToken) {
  for (const auto& r : router_table()) {
    CausalLM m = model_with(r);
    const auto& c = m->config();
    const int64_t expert = 3 * c.hidden_size * c.intermediate_size;
    const int64_t used = r.experts == ExpertsPerToken::kAll    ? 3
                         : r.experts == ExpertsPerToken::kTopK ? c.num_experts_per_tok
                                                               : 1;
    // REINFORCE's learned baseline (1, C) is a training-only weight: never active.
    const int64_t baseline = r.training == RouterTraining::kPolicyGradient ? c.hidden_size : 0;
    const int64_t unused_per_layer = (3 - used) * expert + baseline;
    EXPECT_EQ(m->num_params() - m->num_active_params(), c.num_hidden_layers * unused_per_layer)
        << r.name;
  }
}

}  // namespace
}  // namespace btx
