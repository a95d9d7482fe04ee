// Parameter roles (model/param_roles.h): every parameter of every model kind has exactly the
// role its name says, counted by hand; selections train what they say; bad names are errors.
#include "btx/model/param_roles.h"

#include <gtest/gtest.h>

#include <map>

#include "btx/model/llama.h"
#include "btx/util/error.h"
#include "moe_util.h"

namespace btx {
namespace {

std::map<ParamRole, int> count_roles(const ModelConfig& c) {
  CausalLM m(c);
  std::map<ParamRole, int> n;
  for (const auto& p : m->named_parameters()) ++n[param_role(p.key())];
  return n;
}

TEST(ParamRoles, EveryParameterOfEveryModelKindHasItsRole) {
  using R = ParamRole;
  // Dense, tied embeddings: 1 embedding, 2 layers x (4 attention, 3 MLP, 2 norms) + final norm.
  ModelConfig dense = testing::small_model_config(30, 8, 12, 2, 2, 2, 16);
  dense.tie_word_embeddings = true;
  EXPECT_EQ(
      count_roles(dense),
      (std::map<R, int>{{R::kEmbedding, 1}, {R::kAttention, 8}, {R::kNorm, 5}, {R::kFfn, 6}}));
  dense.tie_word_embeddings = false;
  EXPECT_EQ(count_roles(dense)[R::kLmHead], 1);
  // MoE: 3 experts x 3 weights per layer, one gate per layer.
  const auto moe = count_roles(testing::routed_config("mixtral", 3, 2, "top-k"));
  EXPECT_EQ(moe.at(R::kFfn), 2 * 3 * 3);
  EXPECT_EQ(moe.at(R::kRouter), 2);
  // REINFORCE adds a learned baseline per layer: a router parameter.
  EXPECT_EQ(count_roles(testing::routed_config("mixtral", 3, 1, "reinforce")).at(R::kRouter), 4);
  const auto smear = count_roles(testing::routed_config("smear", 3, 1, "prefix"));
  EXPECT_EQ(smear.at(R::kFfn), 2 * 3 * 3);
  EXPECT_EQ(smear.at(R::kRouter), 2);
  EXPECT_EQ(smear.at(R::kAttention), 8);
}

TEST(ParamRoles, NamesAndErrors) {
  EXPECT_EQ(param_role("model.layers.3.block_sparse_moe.experts.7.w2.weight"), ParamRole::kFfn);
  EXPECT_EQ(param_role("model.layers.0.smear.gate.weight"), ParamRole::kRouter);
  EXPECT_EQ(param_role("model.layers.1.post_attention_layernorm.weight"), ParamRole::kNorm);
  EXPECT_EQ(param_role("model.layers.1.self_attn.o_proj.weight"), ParamRole::kAttention);
  try {
    param_role("model.layers.0.mystery.weight");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'model.layers.0.mystery.weight' has no known role"),
              std::string::npos)
        << e.what();
  }
  EXPECT_STREQ(role_name(ParamRole::kLmHead), "lm_head");
}

TEST(ParamRoles, SelectionsTrainWhatTheySay) {
  const std::vector<std::string> all_names = {"all", "ffn", "router", "router+shared"};
  const auto& all = param_selection("all", all_names, "x");
  EXPECT_TRUE(all.all());
  const auto& ffn = param_selection("ffn", all_names, "x");
  EXPECT_FALSE(ffn.all());
  EXPECT_TRUE(ffn.trains("model.layers.0.mlp.up_proj.weight"));
  EXPECT_FALSE(ffn.trains("model.embed_tokens.weight"));
  const auto& shared = param_selection("router+shared", all_names, "x");
  EXPECT_TRUE(shared.trains("model.layers.0.block_sparse_moe.gate.weight"));
  EXPECT_TRUE(shared.trains("model.norm.weight"));
  EXPECT_FALSE(shared.trains("model.layers.0.block_sparse_moe.experts.0.w1.weight"));
  // Every role is trained by "all", and by exactly one of "ffn" and "router+shared".
  for (auto role : {ParamRole::kEmbedding, ParamRole::kAttention, ParamRole::kNorm,
                    ParamRole::kLmHead, ParamRole::kFfn, ParamRole::kRouter}) {
    EXPECT_TRUE(all.roles.count(role));
    EXPECT_EQ(ffn.roles.count(role) + shared.roles.count(role), 1u) << role_name(role);
  }
  try {
    param_selection("router", {"all", "ffn"}, "[experts] mode");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[experts] mode: 'router' is not one of all, ffn");
  }
}

}  // namespace
}  // namespace btx
