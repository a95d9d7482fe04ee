// BAM's mixture of attention experts against hand-computed mixtures: one expert is the plain
// attention, two are the softmax-gated sum of the two attentions run on their own (grouped-query
// heads included); names, parameter counts, roles and FLOPs follow the number of experts.
#include "btx/model/attention_experts.h"

#include <gtest/gtest.h>

#include "btx/model/llama.h"
#include "btx/model/param_roles.h"
#include "model_util.h"

namespace btx {
namespace {

// 2 layers, C 16, H 4 query heads over G 2 key/value heads.
ModelConfig bam_config(int64_t experts) {
  ModelConfig c = testing::small_model_config(50, 16, 24, 2, 4, 2, 32);
  c.num_attention_experts = experts;
  return c;
}

// Copies `from`'s weights (projections, their biases, q/k norms) into `to`.
void copy_attention(AttentionImpl& to, const AttentionImpl& from) {
  torch::NoGradGuard ng;
  const auto src = from.named_parameters();
  for (auto& p : to.named_parameters()) p.value().copy_(src[p.key()]);
}

TEST(AttentionExperts, OneExpertIsThePlainAttention) {
  torch::manual_seed(1);
  torch::NoGradGuard ng;
  CausalLM dense(bam_config(0));
  CausalLM bam(bam_config(1));
  auto src = dense->named_parameters();
  for (auto& p : bam->named_parameters()) {
    std::string name = p.key();
    if (name.find(".self_attn.gate.") != std::string::npos) continue;  // any router: weight 1
    const auto at = name.find(".experts.0.");
    if (at != std::string::npos && name.find("self_attn") != std::string::npos) {
      name.erase(at, std::string(".experts.0").size());
    }
    ASSERT_TRUE(src.contains(name)) << p.key();
    p.value().copy_(src[name]);
  }
  const auto ids = torch::randint(0, 50, {2, 11}, torch::kInt64);
  EXPECT_TRUE(torch::allclose(bam(ids), dense(ids), 1e-6, 1e-6));
}

TEST(AttentionExperts, TwoExpertsAreTheSoftmaxGatedSumOfTheirAttentions) {
  // Each base's attention: llama's plain projections, qwen2's q/k/v biases, and qwen3's q/k
  // norms with biases on every projection and a head_dim of its own.
  for (auto base : {BaseModelType::kLlama, BaseModelType::kQwen2, BaseModelType::kQwen3}) {
    SCOPED_TRACE(name_of(base));
    torch::manual_seed(2);
    torch::NoGradGuard ng;
    ModelConfig c = bam_config(2);
    c.base_model_type = base;
    if (base == BaseModelType::kQwen3) {
      c.attention_bias = true;
      c.explicit_head_dim = 6;
    }
    AttentionExperts mix(c);
    for (auto& p : mix->named_parameters()) {
      if (p.value().dim() == 1) p.value().normal_(0.5, 0.5);  // biases and norms that show
    }
    Attention a(c), b(c);
    copy_attention(*a, *mix->experts[0]->as<AttentionImpl>());
    copy_attention(*b, *mix->experts[1]->as<AttentionImpl>());
    const auto x = torch::randn({2, 7, 16});
    const auto rope = rope_tables(7, c.head_dim(), c.rope_theta);
    const auto ya = a->forward(x, rope), yb = b->forward(x, rope);
    // A zero router weighs both 1/2.
    mix->gate->weight.zero_();
    EXPECT_TRUE(torch::allclose(mix->forward(x, rope), 0.5 * (ya + yb), 1e-5, 1e-6));
    // Any router: g = softmax(W x) per token.
    mix->gate->weight.normal_(0.0, 1.0);
    const auto g = torch::softmax(torch::matmul(x, mix->gate->weight.t()), -1);  // (2, 7, 2)
    const auto want = g.narrow(-1, 0, 1) * ya + g.narrow(-1, 1, 1) * yb;
    EXPECT_TRUE(torch::allclose(mix->forward(x, rope), want, 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(mix->last_gates(), g, 1e-6, 1e-7));
  }
}

TEST(AttentionExperts, NamesParametersRolesAndFlops) {
  const int64_t E = 3;
  CausalLM bam(bam_config(E));
  CausalLM dense(bam_config(0));
  const auto names = bam->named_parameters();
  for (const char* p : {"q", "k", "v", "o"}) {
    EXPECT_TRUE(names.contains(attention_expert_name(1, 2, p))) << p;
    EXPECT_FALSE(names.contains(attention_name(1, p))) << p;
    EXPECT_EQ(param_role(attention_expert_name(0, 1, p)), ParamRole::kAttention);
  }
  ASSERT_TRUE(names.contains(attention_router_name(0)));
  EXPECT_EQ(names[attention_router_name(0)].sizes(), (std::vector<int64_t>{E, 16}));
  EXPECT_EQ(param_role(attention_router_name(0)), ParamRole::kRouter);
  // Per layer: q 16x16 + k, v 2 x (8x16) + o 16x16 = 768 per attention, a router of E x 16.
  const int64_t per_layer = (E - 1) * 768 + E * 16;
  EXPECT_EQ(bam->num_params(), dense->num_params() + 2 * per_layer);
  EXPECT_EQ(bam->num_active_params(), bam->num_params());  // soft: every expert runs
  // Every expert scores and weighs the context: 2 * T * C each, per layer.
  const int64_t T = 10;
  EXPECT_EQ(forward_flops_per_token(bam, T),
            forward_flops_per_token(dense, T) + 2 * 2 * per_layer + 2 * 2 * (E - 1) * T * 16);
}

TEST(AttentionExperts, ConfigRoundTripAndArchitecture) {
  const ModelConfig c = bam_config(3);
  const auto j = model_config_to_json(c);
  EXPECT_EQ(j["architectures"][0], "BtxBamForCausalLM");
  EXPECT_EQ(j["num_attention_experts"], 3);
  EXPECT_EQ(model_config_from_json(j, "config.json"), c);
  auto bad = j;
  bad["num_attention_experts"] = -1;
  try {
    model_config_from_json(bad, "config.json");
    FAIL() << "accepted a negative num_attention_experts";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("config.json: num_attention_experts must be >= 0"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace btx
