// The model's pieces against hand-computed values, and its invariants: causality, HF names,
// grouped-query attention as multi-head attention with shared key/value heads.
#include <gtest/gtest.h>

#include "btx/model/llama.h"
#include "model_util.h"

namespace btx {
namespace {

ModelConfig tiny_config() {
  return testing::small_model_config(50, 16, 24, 2, 4, 2, 32);
}

TEST(RMSNorm, HandComputed) {
  RMSNorm norm(2, 0.0);
  norm->weight.data().copy_(torch::tensor({1.0f, 2.0f}));
  // x = (3, 4): mean square = 12.5, rms = 3.5355; y = (3/rms, 2 * 4/rms)
  auto y = norm(torch::tensor({{3.0f, 4.0f}}));
  EXPECT_NEAR(y[0][0].item<float>(), 0.848528f, 1e-5);
  EXPECT_NEAR(y[0][1].item<float>(), 2.262742f, 1e-5);
}

TEST(Rope, HandComputedHalfLayout) {
  // D = 4, base 100: theta = (1, 0.1). Position 1 rotates pair (x0, x2) by 1 rad and (x1, x3)
  // by 0.1 rad (HF's half layout: element i pairs with i + D/2).
  auto rope = rope_tables(2, 4, 100.0);
  auto x = torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}).view({1, 1, 1, 4}).expand({1, 1, 2, 4});
  auto y = apply_rope(x.contiguous(), rope);
  // position 0: unchanged
  EXPECT_TRUE(torch::allclose(y[0][0][0], x[0][0][0]));
  const double c1 = std::cos(1.0), s1 = std::sin(1.0), c2 = std::cos(0.1), s2 = std::sin(0.1);
  auto expected =
      torch::tensor({static_cast<float>(1 * c1 - 3 * s1), static_cast<float>(2 * c2 - 4 * s2),
                     static_cast<float>(3 * c1 + 1 * s1), static_cast<float>(4 * c2 + 2 * s2)});
  EXPECT_TRUE(torch::allclose(y[0][0][1], expected, 1e-5, 1e-6)) << y[0][0][1];
}

TEST(Rope, PreservesNormAndRelativePosition) {
  auto rope = rope_tables(8, 8, 10000.0);
  torch::manual_seed(0);
  auto q = torch::randn({1, 1, 1, 8}).expand({1, 1, 8, 8}).contiguous();
  auto k = torch::randn({1, 1, 1, 8}).expand({1, 1, 8, 8}).contiguous();
  auto rq = apply_rope(q, rope), rk = apply_rope(k, rope);
  EXPECT_TRUE(torch::allclose(rq.norm(2, -1), q.norm(2, -1), 1e-5));
  // <R(m) q, R(n) k> depends only on m - n.
  auto dot = [&](int m, int n) { return (rq[0][0][m] * rk[0][0][n]).sum().item<float>(); };
  EXPECT_NEAR(dot(3, 1), dot(6, 4), 1e-4);
  EXPECT_NEAR(dot(5, 5), dot(0, 0), 1e-4);
}

TEST(CausalLM, HuggingFaceParameterNames) {
  auto c = tiny_config();
  c.tie_word_embeddings = false;
  CausalLM m(c);
  std::set<std::string> names;
  for (auto& p : m->named_parameters()) names.insert(p.key());
  for (const char* n :
       {"model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
        "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
        "model.layers.0.post_attention_layernorm.weight", "model.layers.1.mlp.gate_proj.weight",
        "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight",
        "model.norm.weight", "lm_head.weight"}) {
    EXPECT_TRUE(names.count(n)) << n;
  }
  EXPECT_EQ(names.size(), 3u + 9u * 2u);
  EXPECT_EQ(m->named_parameters()["model.layers.0.self_attn.k_proj.weight"].sizes(),
            (std::vector<int64_t>{2 * 4, 16}));  // G * D rows
  c.tie_word_embeddings = true;
  CausalLM tied(c);
  EXPECT_EQ(tied->named_parameters().size(), names.size() - 1);
  EXPECT_EQ(tied->num_params(), m->num_params() - 50 * 16);
  EXPECT_EQ(tied->num_active_params(), tied->num_params());
}

TEST(CausalLM, CausalityFutureTokensDoNotChangePastLogits) {
  torch::manual_seed(1);
  CausalLM m(tiny_config());
  torch::NoGradGuard ng;
  auto a = torch::randint(0, 50, {2, 12}, torch::kLong);
  auto b = a.clone();
  b.narrow(1, 7, 5).random_(0, 50);  // change tokens 7..11
  auto la = m(a), lb = m(b);
  EXPECT_TRUE(torch::allclose(la.narrow(1, 0, 7), lb.narrow(1, 0, 7), 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(la.narrow(1, 7, 5), lb.narrow(1, 7, 5), 1e-3, 1e-3));
}

TEST(CausalLM, GroupedQueryEqualsMultiHeadWithSharedKeyValues) {
  torch::manual_seed(2);
  auto c = tiny_config();  // H = 4, G = 2
  CausalLM gqa(c);
  auto c_mha = c;
  c_mha.num_key_value_heads = 4;
  CausalLM mha(c_mha);
  torch::NoGradGuard ng;
  auto src = gqa->named_parameters();
  for (auto& p : mha->named_parameters()) {
    auto w = src[p.key()];
    if (p.key().find("k_proj") != std::string::npos ||
        p.key().find("v_proj") != std::string::npos) {
      // (G*D, C) -> (H*D, C): each kv head repeated for its H/G query heads
      w = w.view({2, 1, 4, 16}).expand({2, 2, 4, 16}).reshape({16, 16});
    }
    p.value().copy_(w);
  }
  auto ids = torch::randint(0, 50, {2, 9}, torch::kLong);
  EXPECT_TRUE(torch::allclose(gqa(ids), mha(ids), 1e-5, 1e-6));
}

TEST(CausalLM, FlopsPerTokenHandCount) {
  auto c = tiny_config();
  CausalLM m(c);
  // per layer: q 16x16 + k,v 2*(8x16) + o 16x16 + 3 * 16x24 = 256+256+256+1152 = 1920
  const int64_t matmul = 2 * 1920;
  const int64_t head = 50 * 16;
  const int64_t T = 10;
  EXPECT_EQ(forward_flops_per_token(m, T), 2 * (matmul + head) + 2 * 2 * T * 16);
}

TEST(CausalLM, LossOfUniformModelIsLogVocab) {
  auto c = tiny_config();
  CausalLM m(c);
  torch::NoGradGuard ng;
  for (auto& p : m->parameters()) p.zero_();  // all-zero weights: uniform next-token distribution
  auto loss = lm_loss(m, torch::randint(0, 50, {3, 9}, torch::kLong));
  EXPECT_NEAR(loss.item<double>(), std::log(50.0), 1e-5);
}

}  // namespace
}  // namespace btx
