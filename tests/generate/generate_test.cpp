// Incremental decoding and token choice: the KV cache gives the logits of full recomputation
// (dense with grouped-query heads, top-2 MoE, hash routing), models that cannot be cached say so,
// and choose_token follows hand-computed cumulative distributions for temperature, top-k, top-p.
#include "btx/generate/generate.h"

#include <gtest/gtest.h>

#include <functional>

#include "btx/data/tokenizer.h"
#include "btx/model/llama.h"
#include "btx/util/error.h"
#include "model_util.h"
#include "moe_util.h"

namespace btx {
namespace {

using testing::routed_config;
using testing::small_model_config;

// Logits of `ids` (1, T) computed incrementally: the first `prompt` tokens at once, then one at a
// time, concatenated.
torch::Tensor incremental(CausalLM& m, const torch::Tensor& ids, int64_t prompt) {
  KVCache cache;
  std::vector<torch::Tensor> parts = {m->forward_cached(ids.narrow(1, 0, prompt), cache)};
  for (int64_t t = prompt; t < ids.size(1); ++t)
    parts.push_back(m->forward_cached(ids.narrow(1, t, 1), cache));
  EXPECT_EQ(cache.length, ids.size(1));
  return torch::cat(parts, 1);
}

// BAM: a top-2 MoE of 3 experts with 3 attention experts of 4 query heads over 2 key/value heads.
ModelConfig bam_config() {
  ModelConfig c = routed_config("mixtral", 3, 2, "top-k");
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.num_attention_experts = 3;
  return c;
}

void expect_cache_matches(const ModelConfig& c) {
  torch::manual_seed(5);
  torch::NoGradGuard no_grad;
  CausalLM m(c);
  m->eval();
  ASSERT_TRUE(m->supports_cache());
  const auto ids = torch::randint(0, c.vocab_size, {1, 12}, torch::kInt64);
  const auto full = m->forward(ids);
  const auto inc = incremental(m, ids, 5);
  EXPECT_LT((full - inc).abs().max().item<double>(), 1e-5)
      << name_of(c.model_type) << " " << c.router_mode;
}

TEST(KVCache, IncrementalLogitsEqualFullRecomputation) {
  expect_cache_matches(small_model_config(40, 16, 24, 2, 4, 2, 32));  // GQA: 2 kv heads for 4
  expect_cache_matches(routed_config("mixtral", 4, 2, "top-k"));
  expect_cache_matches(routed_config("mixtral", 4, 1, "hash"));
  expect_cache_matches(routed_config("smear", 3, 1, "prefix"));  // the prefix sums carried
  expect_cache_matches(bam_config());  // every attention expert's keys and values cached
}

// Prefill with LogitsAt::kLast applies the LM head to the last position only; its logits are
// the last position's of the full prefill, for tied and untied heads, padded rows included.
TEST(KVCache, LastPositionLogitsEqualThoseOfTheFullPrefill) {
  torch::NoGradGuard no_grad;
  for (bool tied : {true, false}) {
    ModelConfig c = small_model_config(40, 16, 24, 2, 4, 2, 32);
    c.tie_word_embeddings = tied;
    torch::manual_seed(6);
    CausalLM m(c);
    m->eval();
    const auto ids = torch::randint(0, c.vocab_size, {2, 9}, torch::kInt64);
    KVCache all_cache, last_cache;
    all_cache.pad = last_cache.pad = torch::tensor({0, 3}, torch::kInt64);
    const auto all = m->forward_cached(ids, all_cache);
    const auto last = m->forward_cached(ids, last_cache, LogitsAt::kLast);
    ASSERT_EQ(last.sizes(), (std::vector<int64_t>{2, c.vocab_size}));
    EXPECT_LT((all.select(1, -1) - last).abs().max().item<double>(), 1e-6) << tied;
    EXPECT_EQ(last_cache.length, all_cache.length);
    // Uncached decoding takes the last position of the whole forward the same way.
    ModelDecoder uncached(m, /*use_cache=*/false);
    const std::vector<int32_t> seq = {3, 1, 4, 1, 5};
    const auto want = m->forward(torch::tensor({3, 1, 4, 1, 5}, torch::kInt64).view({1, -1}));
    EXPECT_LT((uncached.next_scores(seq) - want[0][-1]).abs().max().item<double>(), 1e-6);
  }
}

// How sequences join the batch in expect_schedule_matches.
enum class Joins {
  kOneByOne,   // 0, then 1 (longer than the running row), then 2 (shorter)
  kTwoAtOnce,  // 0, then 1 and 2 read together (7 and 5 tokens, the running row at 5)
  kAllAtOnce,  // 0, 1 and 2 read together into an empty batch (3, 7 and 5 tokens)
};

// Runs three sequences (12 tokens each; prompts of 3, 7 and 5) through `batch` on a schedule
// of joins, steps and leaves, and checks every row's scores against `alone(i, n)`: sequence i's
// scores after its first n tokens, computed alone.
void expect_schedule_matches(BatchDecoder& batch, const std::vector<std::vector<int32_t>>& seq,
                             const std::function<torch::Tensor(size_t, int64_t)>& alone,
                             const std::string& what, Joins joins = Joins::kOneByOne) {
  const std::vector<int64_t> prompt_len = {3, 7, 5};
  std::vector<size_t> rows;      // sequence of each row
  std::vector<int64_t> read(3);  // tokens of each sequence read so far
  auto check = [&](size_t i, const torch::Tensor& scores) {
    const auto expect = alone(i, read[i]);
    // Compared as distributions: the ensemble's scores are log-probs, a model's are logits.
    EXPECT_LT((torch::softmax(scores.to(torch::kFloat64), -1) -
               torch::softmax(expect.to(torch::kFloat64), -1))
                  .abs()
                  .max()
                  .item<double>(),
              1e-6)
        << what << ": sequence " << i << " after " << read[i] << " tokens";
  };
  auto add = [&](const std::vector<size_t>& which) {
    std::vector<std::vector<int32_t>> prompts;
    for (size_t i : which) {
      read[i] = prompt_len[i];
      prompts.emplace_back(seq[i].begin(), seq[i].begin() + read[i]);
    }
    const auto scores = batch.add_rows(prompts);
    ASSERT_EQ(scores.size(0), static_cast<int64_t>(which.size()));
    for (size_t r = 0; r < which.size(); ++r) {
      check(which[r], scores[static_cast<int64_t>(r)]);
      rows.push_back(which[r]);
    }
    EXPECT_EQ(batch.rows(), static_cast<int64_t>(rows.size()));
  };
  auto step = [&](int times) {
    for (int k = 0; k < times; ++k) {
      std::vector<int32_t> tokens;
      for (size_t i : rows) tokens.push_back(seq[i][static_cast<size_t>(read[i]++)]);
      const auto scores = batch.step(tokens);
      ASSERT_EQ(scores.size(0), static_cast<int64_t>(rows.size()));
      for (size_t r = 0; r < rows.size(); ++r) check(rows[r], scores[static_cast<int64_t>(r)]);
    }
  };
  auto keep = [&](const std::vector<int64_t>& which) {
    std::vector<size_t> kept;
    for (int64_t r : which) kept.push_back(rows[static_cast<size_t>(r)]);
    batch.keep(which);
    rows = kept;
    EXPECT_EQ(batch.rows(), static_cast<int64_t>(rows.size()));
  };
  if (joins == Joins::kAllAtOnce) {
    add({0, 1, 2});
    step(2);
  } else {
    add({0});
    step(2);  // sequence 0 has read 5
    if (joins == Joins::kOneByOne) {
      add({1});  // 7 > 5: the running row is padded
      step(2);
      add({2});  // 5 < 9: the new row is padded
    } else {
      add({1, 2});  // 7 and 5 together; the running row at 5 is padded
      step(2);
    }
  }
  step(2);
  keep({0, 2});  // the second row leaves
  step(2);
  keep({1});  // the first leaves; the last alone, its padding dropped
  step(1);
  EXPECT_EQ(read[2], joins == Joins::kOneByOne ? 10 : 12) << what;
}

std::vector<std::vector<int32_t>> random_sequences(int64_t vocab) {
  std::vector<std::vector<int32_t>> seq(3);
  for (auto& s : seq) {
    auto ids = torch::randint(0, vocab, {12}, torch::kInt64);
    for (int64_t t = 0; t < 12; ++t) s.push_back(static_cast<int32_t>(ids[t].item<int64_t>()));
  }
  return seq;
}

torch::Tensor ids_of(const std::vector<int32_t>& s, int64_t n) {
  std::vector<int64_t> x(s.begin(), s.begin() + n);
  return torch::tensor(x, torch::kInt64).view({1, -1});
}

// Continuous batching: sequences join a running batch (left-padded) and leave it; every row's
// scores equal that sequence's logits computed alone, for a dense model with grouped-query
// heads and a top-2 MoE.
void expect_batch_matches(const ModelConfig& c) {
  torch::manual_seed(9);
  torch::NoGradGuard no_grad;
  CausalLM m(c);
  m->eval();
  // Routers of unit scale, so that routing, and what enters SMEAR's prefix mean, shows in the
  // logits (at the default init a padding token in the prefix changes them by ~1e-5 only).
  for (auto& p : m->named_parameters()) {
    if (p.key().find(".gate.") != std::string::npos) p.value().normal_(0, 1);
  }
  const auto seq = random_sequences(c.vocab_size);
  for (auto joins : {Joins::kOneByOne, Joins::kTwoAtOnce, Joins::kAllAtOnce}) {
    ModelBatchDecoder batch(m);
    expect_schedule_matches(
        batch, seq, [&](size_t i, int64_t n) { return m->forward(ids_of(seq[i], n))[0][-1]; },
        std::string(name_of(c.model_type)) + " " + c.router_mode + " joins " +
            std::to_string(static_cast<int>(joins)),
        joins);
  }
}

TEST(KVCache, BatchedRowsJoiningAndLeavingMatchDecodingAlone) {
  expect_batch_matches(small_model_config(40, 16, 24, 2, 4, 2, 32));
  expect_batch_matches(routed_config("mixtral", 4, 2, "top-k"));
  expect_batch_matches(routed_config("smear", 3, 1, "prefix"));
  expect_batch_matches(bam_config());
}

// Three random experts of one shape, for the ensemble decoders.
struct EnsembleFixture {
  std::vector<std::string> names = {"a", "b", "c"};
  std::vector<CausalLM> experts;
  EnsembleFixture() {
    torch::manual_seed(11);
    for (int j = 0; j < 3; ++j) {
      experts.emplace_back(small_model_config(40, 16, 24, 2, 4, 2, 32));
      experts.back()->eval();
    }
  }
};

// The ensemble batched: each row's mixture and posterior equal the recomputing ensemble's on
// that sequence alone (EnsembleScorer's updating prior), for all experts and for top-2 of 3.
TEST(EnsembleBatchDecoder, RowsJoiningAndLeavingMatchTheEnsembleAlone) {
  torch::NoGradGuard no_grad;
  EnsembleFixture f;
  const auto& names = f.names;
  const auto& experts = f.experts;
  const auto seq = random_sequences(40);
  for (int64_t k : {0, 2}) {
    for (auto joins : {Joins::kOneByOne, Joins::kTwoAtOnce, Joins::kAllAtOnce}) {
      EnsembleBatchDecoder batch(names, experts, k);
      EnsembleDecoder alone(names, experts, k, /*use_cache=*/false);
      expect_schedule_matches(
          batch, seq,
          [&](size_t i, int64_t n) {
            alone.reset();
            return alone.next_scores(std::vector<int32_t>(seq[i].begin(), seq[i].begin() + n));
          },
          "ensemble top-" + std::to_string(k) + " joins " + std::to_string(static_cast<int>(joins)),
          joins);
    }
  }
  // A row's posterior is that sequence's alone.
  EnsembleBatchDecoder batch(names, experts, 0);
  EnsembleDecoder alone(names, experts, 0, false);
  batch.add_rows({std::vector<int32_t>(seq[0].begin(), seq[0].begin() + 6),
                  std::vector<int32_t>(seq[1].begin(), seq[1].begin() + 4)});
  batch.step({seq[0][6], seq[1][4]});
  alone.next_scores(std::vector<int32_t>(seq[1].begin(), seq[1].begin() + 5));
  EXPECT_LT((batch.posterior(1) - alone.posterior()).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(batch.row_state(1).at("posterior").size(), 3u);
}

TEST(KVCache, ModelsReadingTheSequenceCannotBeCached) {
  CausalLM smear(routed_config("smear", 3, 1, "sequence"));
  EXPECT_FALSE(smear->supports_cache());
  EXPECT_TRUE(CausalLM(routed_config("smear", 3, 1, "prefix"))->supports_cache());
  KVCache cache;
  EXPECT_THROW(smear->forward_cached(torch::zeros({1, 2}, torch::kInt64), cache), c10::Error);
  EXPECT_FALSE(CausalLM(routed_config("mixtral", 3, 1, "sample"))->supports_cache());
  // The context bound holds for the cache too.
  CausalLM dense(small_model_config(40, 16, 24, 1, 4, 4, 8));
  KVCache c2;
  dense->forward_cached(torch::zeros({1, 6}, torch::kInt64), c2);
  EXPECT_THROW(dense->forward_cached(torch::zeros({1, 3}, torch::kInt64), c2), c10::Error);
}

// SMEAR keeps its stacked expert weights between inference forwards, and restacks when a
// weight changes (in place, or replaced), so a loaded or edited model is never run stale.
TEST(SmearStacked, FollowsWeightChanges) {
  torch::manual_seed(3);
  torch::NoGradGuard no_grad;
  CausalLM m(routed_config("smear", 3, 1, "prefix"));
  m->eval();
  const auto ids = torch::randint(0, 30, {2, 6}, torch::kInt64);
  const auto before = m->forward(ids);
  EXPECT_TRUE(torch::equal(before, m->forward(ids)));  // kept: the same result
  for (auto& p : m->parameters()) {
    if (p.dim() == 2 && p.size(0) == 12) {  // an expert's w1 / w3 (F=12, C=8)
      p.mul_(2.0);
      break;
    }
  }
  const auto after = m->forward(ids);
  EXPECT_FALSE(torch::allclose(before, after));
  // The same as a model built with the changed weights from the start.
  CausalLM fresh(routed_config("smear", 3, 1, "prefix"));
  fresh->eval();
  auto src = m->parameters();
  auto dst = fresh->parameters();
  for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  EXPECT_TRUE(torch::allclose(after, fresh->forward(ids), 1e-6, 1e-6));
}

TEST(EnsembleDecoder, IncrementalPosteriorEqualsRecomputationAndBayesRule) {
  EnsembleFixture f;
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(0, 40, {12}, torch::kInt64);
  std::vector<int32_t> seq;
  for (int64_t t = 0; t < ids.size(0); ++t)
    seq.push_back(static_cast<int32_t>(ids[t].item<int64_t>()));
  // Each expert's log-probs over the whole sequence, for the hand computation.
  std::vector<torch::Tensor> lp;
  for (auto& m : f.experts)
    lp.push_back(torch::log_softmax(m->forward(ids.view({1, -1}))[0], -1).to(torch::kFloat64));
  for (int64_t k : {0, 1, 2}) {
    EnsembleDecoder cached(f.names, f.experts, k, /*use_cache=*/true);
    EnsembleDecoder full(f.names, f.experts, k, /*use_cache=*/false);
    // The prompt is the first 5 tokens, read at once; then one token at a time.
    for (size_t n = 5; n <= seq.size(); ++n) {
      const std::vector<int32_t> prefix(seq.begin(), seq.begin() + static_cast<long>(n));
      const auto a = cached.next_scores(prefix);
      const auto b = full.next_scores(prefix);
      EXPECT_LT((a - b).abs().max().item<double>(), 1e-5) << "k " << k << " n " << n;
      EXPECT_LT((cached.posterior() - full.posterior()).abs().max().item<double>(), 1e-6);
      // Bayes' rule by hand: log w_j = Σ_{s=1}^{n-1} log p_j(x_s | x_<s), normalised; the top-k
      // keep their share renormalised; the mixture is Σ_j w_j p_j(. | prefix).
      std::vector<double> logw(3);
      for (size_t j = 0; j < 3; ++j) {
        double e = 0;
        for (size_t s = 1; s < n; ++s)
          e += lp[j][static_cast<int64_t>(s - 1)][seq[s]].item<double>();
        logw[j] = e;
      }
      std::vector<size_t> order = {0, 1, 2};
      std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return logw[x] > logw[y]; });
      const size_t kept = k == 0 ? 3 : static_cast<size_t>(k);
      double z = 0;
      for (size_t i = 0; i < kept; ++i) z += std::exp(logw[order[i]] - logw[order[0]]);
      auto mix = torch::zeros({40}, torch::kFloat64);
      for (size_t i = 0; i < kept; ++i) {
        const size_t j = order[i];
        const double w = std::exp(logw[j] - logw[order[0]]) / z;
        EXPECT_NEAR(cached.posterior()[static_cast<int64_t>(j)].item<double>(), w, 1e-6);
        mix += w * lp[j][static_cast<int64_t>(n - 1)].exp();
      }
      EXPECT_LT((torch::softmax(a.to(torch::kFloat64), 0) - mix).abs().max().item<double>(), 1e-6);
    }
    // reset() starts a new sequence: the same scores again.
    cached.reset();
    full.reset();
    const std::vector<int32_t> prompt(seq.begin(), seq.begin() + 5);
    EXPECT_LT((cached.next_scores(prompt) - full.next_scores(prompt)).abs().max().item<double>(),
              1e-5);
  }
  EXPECT_THROW(EnsembleDecoder(f.names, f.experts, 4, true), Error);  // top-4 of 3
}

// The served log-probabilities (score_tokens, token_logprob): a model's one forward pass and the
// generic token-by-token path (the ensemble's) give the same, and each is log_softmax by hand.
TEST(ScoreTokens, OneForwardEqualsTokenByTokenAndLogSoftmax) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(8);
  CausalLM m(routed_config("mixtral", 4, 2, "top-k"));
  m->eval();
  ModelDecoder d(m, /*use_cache=*/true);
  const std::vector<int32_t> seq = {3, 17, 5, 5, 29, 0, 11};
  const auto one = d.sequence_scores(seq);
  const auto step = d.Decoder::sequence_scores(seq);  // next_scores over growing prefixes
  ASSERT_EQ(one.sizes(), step.sizes());
  EXPECT_LT((one.to(torch::kFloat64) - step).abs().max().item<double>(), 1e-5);
  const auto lp = score_tokens(d, seq, 3);
  ASSERT_EQ(lp.size(), seq.size() - 1);
  const auto ref = torch::log_softmax(
      m->forward(torch::tensor(std::vector<int64_t>(seq.begin(), seq.end())).view({1, -1}))[0].to(
          torch::kFloat64),
      -1);
  for (size_t t = 0; t + 1 < seq.size(); ++t) {
    EXPECT_EQ(lp[t].token, seq[t + 1]);
    EXPECT_NEAR(lp[t].logprob, ref[static_cast<int64_t>(t)][seq[t + 1]].item<double>(), 1e-9);
    ASSERT_EQ(lp[t].top.size(), 3u);
    const auto best = ref[static_cast<int64_t>(t)].argmax().item<int64_t>();
    EXPECT_EQ(lp[t].top[0].first, best);
    EXPECT_GE(lp[t].top[0].second, lp[t].top[1].second);
    EXPECT_GE(lp[t].top[1].second, lp[t].top[2].second);
  }
  // token_logprob on raw logits: log_softmax by hand for a 3-token vocabulary.
  const auto t = token_logprob(torch::tensor({0.0f, std::log(3.0f), 0.0f}), 1, 1);
  EXPECT_NEAR(t.logprob, std::log(0.6), 1e-6);
  EXPECT_EQ(t.top[0].first, 1);
}

TEST(Utf8, IncompleteTailIsHeldBack) {
  EXPECT_EQ(utf8_incomplete_tail(""), 0u);
  EXPECT_EQ(utf8_incomplete_tail("abc"), 0u);
  EXPECT_EQ(utf8_incomplete_tail("caf\xC3"), 1u);      // é's first byte of 2
  EXPECT_EQ(utf8_incomplete_tail("caf\xC3\xA9"), 0u);  // é complete
  EXPECT_EQ(utf8_incomplete_tail("\xE2\x82"), 2u);     // € has 3 bytes
  EXPECT_EQ(utf8_incomplete_tail("x\xE2\x82\xAC"), 0u);
  EXPECT_EQ(utf8_incomplete_tail("\xF0\x9F\x98"), 3u);  // an emoji has 4
  EXPECT_EQ(utf8_incomplete_tail("\xF0\x9F\x98\x80"), 0u);
  EXPECT_EQ(utf8_incomplete_tail("\x80\x80\x80\x80\x80"), 0u);  // stray bytes: nothing to wait for
}

TEST(ChooseToken, FollowsTheHandComputedDistribution) {
  // p = (0.5, 0.3, 0.2): cumulative 0.5, 0.8, 1.0.
  const auto logits = torch::log(torch::tensor({0.5, 0.3, 0.2}));
  SamplingOptions greedy;
  EXPECT_EQ(choose_token(logits, greedy, 0.99), 0);
  SamplingOptions t1;
  t1.temperature = 1.0;
  EXPECT_EQ(choose_token(logits, t1, 0.10), 0);
  EXPECT_EQ(choose_token(logits, t1, 0.60), 1);
  EXPECT_EQ(choose_token(logits, t1, 0.85), 2);
  // top-k 2: (0.5, 0.3) renormalised: cumulative 0.625, 1.
  SamplingOptions k2 = t1;
  k2.top_k = 2;
  EXPECT_EQ(choose_token(logits, k2, 0.60), 0);
  EXPECT_EQ(choose_token(logits, k2, 0.70), 1);
  EXPECT_EQ(choose_token(logits, k2, 0.99), 1);  // never the third
  // top-p 0.7: 0.5 < 0.7, 0.8 reaches it: the same two tokens.
  SamplingOptions p7 = t1;
  p7.top_p = 0.7;
  EXPECT_EQ(choose_token(logits, p7, 0.70), 1);
  EXPECT_EQ(choose_token(logits, p7, 0.99), 1);
  // A tiny nucleus or k = 1 is greedy whatever the draw.
  SamplingOptions p_small = t1;
  p_small.top_p = 0.01;
  SamplingOptions k1 = t1;
  k1.top_k = 1;
  for (double u : {0.0, 0.5, 0.999}) {
    EXPECT_EQ(choose_token(logits, p_small, u), 0);
    EXPECT_EQ(choose_token(logits, k1, u), 0);
  }
  // A high temperature flattens: (0.5, 0.3, 0.2)^(1/T) with T large is nearly uniform.
  SamplingOptions hot = t1;
  hot.temperature = 1000;
  EXPECT_EQ(choose_token(logits, hot, 0.34), 1);
  SamplingOptions bad = t1;
  bad.top_p = 0;
  EXPECT_THROW(validate_sampling(bad), Error);
  bad = t1;
  bad.temperature = -1;
  EXPECT_THROW(validate_sampling(bad), Error);
}

TEST(AdjustedLogits, OpenAisFormulasByHand) {
  // logits (1, 2, 3, 4); token 1 generated twice, token 3 once.
  const auto logits = torch::tensor({1.0, 2.0, 3.0, 4.0});
  const auto counts = torch::tensor({0.0, 2.0, 0.0, 1.0});
  SamplingOptions o;
  EXPECT_TRUE(adjusted_logits(logits, counts, o).equal(logits));  // nothing to adjust
  o.frequency_penalty = 0.5;                                      // - 0.5 * count
  auto l = adjusted_logits(logits, counts, o);
  EXPECT_TRUE(torch::allclose(l, torch::tensor({1.0, 1.0, 3.0, 3.5}, torch::kFloat64)));
  o.presence_penalty = 0.25;  // - 0.25 where count > 0, too
  l = adjusted_logits(logits, counts, o);
  EXPECT_TRUE(torch::allclose(l, torch::tensor({1.0, 0.75, 3.0, 3.25}, torch::kFloat64)));
  o.logit_bias = {{0, 100.0}, {2, -1.5}};  // added
  l = adjusted_logits(logits, counts, o);
  EXPECT_TRUE(torch::allclose(l, torch::tensor({101.0, 0.75, 1.5, 3.25}, torch::kFloat64)));
  // Negative penalties favour repeats, as OpenAI allows.
  SamplingOptions repeat;
  repeat.frequency_penalty = -2;
  l = adjusted_logits(logits, counts, repeat);
  EXPECT_TRUE(torch::allclose(l, torch::tensor({1.0, 6.0, 3.0, 6.0}, torch::kFloat64)));
  SamplingOptions bad;
  bad.presence_penalty = 2.5;
  EXPECT_THROW(validate_sampling(bad), Error);
  bad = {};
  bad.logit_bias = {{1, 101.0}};
  EXPECT_THROW(validate_sampling(bad), Error);
  bad = {};
  bad.logit_bias = {{4, 1.0}};  // past the vocabulary
  EXPECT_THROW(adjusted_logits(logits, counts, bad), Error);
}

// Greedy generation over fixed scores (a = 2.0, b = 1.9, the rest 0): the penalties count the
// generated tokens, step by step, as worked out by hand.
TEST(AdjustedLogits, GenerationCountsTheTokensItGenerates) {
  const Tokenizer tok =
      Tokenizer::load(fs::path(BTX_SOURCE_DIR) / "fuzz/corpus/tokenizer/bpe400.model");
  const int32_t a = 100, b = 101, c = 102;
  auto scores = torch::zeros({tok.vocab_size()});
  scores[a] = 2.0;
  scores[b] = 1.9;
  auto run = [&](const SamplingOptions& s) {
    GenerateOptions o;
    o.max_tokens = 5;
    o.sampling = s;
    Generation g(tok, {5}, o, 64);
    while (g.wants_more()) g.take(scores);
    return g.finish().tokens;
  };
  using Ids = std::vector<int32_t>;
  EXPECT_EQ(run({}), (Ids{a, a, a, a, a}));
  SamplingOptions freq;
  freq.frequency_penalty = 0.5;  // a: 2.0, 1.5, 1.5, 1.0 ...; b: 1.9, 1.9, 1.4, 1.4 ...
  EXPECT_EQ(run(freq), (Ids{a, b, a, b, a}));
  SamplingOptions pres;
  pres.presence_penalty = 0.5;  // once each: a 1.5, b 1.4 from the third token on
  EXPECT_EQ(run(pres), (Ids{a, b, a, a, a}));
  SamplingOptions bias = freq;
  bias.frequency_penalty = 1.0;
  bias.logit_bias = {{c, 2.5}};  // c: 2.5, 1.5, 1.5, 1.5, 0.5; a: 2, 2, 1, 1, 1; b: 1.9, ..., 0.9
  EXPECT_EQ(run(bias), (Ids{c, a, b, c, a}));
}

}  // namespace
}  // namespace btx
