// MixtureSampler: mixture proportions, determinism in (seed, step), rows independent of batch
// size, windows that are real consecutive shard tokens, and its errors.
#include "btx/data/sampler.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <unordered_map>

#include "btx/util/error.h"
#include "test_util.h"
#include "tokenizer_util.h"

namespace btx {
namespace {

class SamplerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("btx-sampler");
    testing::write_text(
        *dir_ / "corpus/a.txt",
        testing::tagged_lines('A', {"alpha", "beta", "gamma", "delta"}, 80'000, 'A'));
    testing::write_text(*dir_ / "corpus/b.txt",
                        testing::tagged_lines('B', {"one", "two", "three", "four"}, 80'000, 'B'));
    testing::write_text(*dir_ / "corpus/c.txt",
                        testing::tagged_lines('C', {"red", "green", "blue", "black"}, 80'000, 'C'));
    testing::train_test_tokenizer(*dir_ / "corpus", *dir_ / "tok.model", 320, 30'000);
    ShardOptions o;
    o.corpus = *dir_ / "corpus";
    o.out = *dir_ / "data";
    o.train_tokens = 8'000;
    o.valid_tokens = 500;
    o.test_tokens = 500;
    o.chunk_bytes = 512;
    prepare_shards(o, Tokenizer::load(*dir_ / "tok.model"));
    set_ = new ShardSet(ShardSet::open(o.out));
  }
  static void TearDownTestSuite() {
    delete set_;
    delete dir_;
  }
  static testing::TempDir* dir_;
  static ShardSet* set_;
};
testing::TempDir* SamplerTest::dir_ = nullptr;
ShardSet* SamplerTest::set_ = nullptr;

TEST_F(SamplerTest, ProportionsFollowWeights) {
  const MixtureSampler s(*set_, "train", {{"a", 0.5}, {"b", 0.3}, {"c", 0.2}}, 16, 1);
  std::vector<int> dom;
  const torch::Tensor x = s.batch_with_domains(0, 4000, &dom);  // [B, T+1]
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{4000, 17}));
  ASSERT_EQ(dom.size(), 4000u);
  std::vector<double> frac(3, 0);
  for (int d : dom) frac[d] += 1.0 / 4000;
  EXPECT_EQ(s.domains(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_NEAR(frac[0], 0.5, 0.03);
  EXPECT_NEAR(frac[1], 0.3, 0.03);
  EXPECT_NEAR(frac[2], 0.2, 0.03);
  // Uniform when no weights are given; a zero weight drops the domain.
  const MixtureSampler u(*set_, "train", {}, 16, 1);
  EXPECT_EQ(u.probabilities(), (std::vector<double>{1.0 / 3, 1.0 / 3, 1.0 / 3}));
  const MixtureSampler z(*set_, "train", {{"a", 0.0}, {"c", 2.0}}, 16, 1);
  EXPECT_EQ(z.domains(), (std::vector<std::string>{"c"}));
}

TEST_F(SamplerTest, DeterministicInSeedAndStep) {
  const MixtureSampler s(*set_, "train", {}, 32, 9);
  const MixtureSampler again(*set_, "train", {}, 32, 9);
  const MixtureSampler other_seed(*set_, "train", {}, 32, 10);
  EXPECT_TRUE(torch::equal(s.batch(5, 8), again.batch(5, 8)));  // a resumed run sees the same
  EXPECT_FALSE(torch::equal(s.batch(5, 8), s.batch(6, 8)));
  EXPECT_FALSE(torch::equal(s.batch(5, 8), other_seed.batch(5, 8)));
  // Row r does not depend on the batch size: ranks can take slices of one global batch.
  EXPECT_TRUE(torch::equal(s.rows(5, 2, 6), s.batch(5, 8).slice(0, 2, 6)));
}

TEST_F(SamplerTest, WindowsAreConsecutiveShardTokens) {
  const MixtureSampler s(*set_, "valid", {}, 24, 3);
  std::vector<int> dom;
  const torch::Tensor x = s.batch_with_domains(2, 12, &dom);  // [B, T+1]
  for (int64_t r = 0; r < x.size(0); ++r) {
    const auto& shard = set_->shard(s.domains()[dom[r]], "valid");
    const torch::Tensor all = shard.slice(0, shard.size());  // [n]
    bool found = false;
    for (int64_t o = 0; o + 25 <= shard.size() && !found; ++o) {
      found = torch::equal(all.slice(0, o, o + 25), x[r]);
    }
    EXPECT_TRUE(found) << "row " << r;
  }
}

TEST_F(SamplerTest, Errors) {
  EXPECT_THROW(MixtureSampler(*set_, "train", {{"nosuch", 1.0}}, 16, 0), Error);
  EXPECT_THROW(MixtureSampler(*set_, "train", {{"a", 0.0}, {"b", 0.0}}, 16, 0), Error);
  EXPECT_THROW(MixtureSampler(*set_, "train", {{"a", -1.0}}, 16, 0), Error);
  EXPECT_THROW(MixtureSampler(*set_, "dev", {}, 16, 0), Error);
  try {
    MixtureSampler(*set_, "valid", {{"b", 1.0}}, 500, 0);  // valid holds 500 < 501 tokens
    FAIL() << "expected btx::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("domain 'b'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace btx

namespace btx {
namespace {

// Start of each window in the shard, found by content; -2 for content that occurs at several
// places (this text draws from four words, so some windows repeat) and -1 for none.
std::vector<int64_t> window_starts(const TokenShard& shard, const torch::Tensor& rows) {
  const auto all = shard.slice(0, shard.size());
  const int64_t* p = all.data_ptr<int64_t>();
  std::unordered_map<std::string, int64_t> index;
  const int64_t w = rows.size(1);
  for (int64_t s = 0; s + w <= shard.size(); ++s) {
    auto [it, fresh] =
        index.emplace(std::string(reinterpret_cast<const char*>(p + s), w * sizeof(int64_t)), s);
    if (!fresh) it->second = -2;
  }
  std::vector<int64_t> out;
  for (int64_t r = 0; r < rows.size(0); ++r) {
    auto row = rows[r].contiguous();
    auto it = index.find(
        std::string(reinterpret_cast<const char*>(row.data_ptr<int64_t>()), w * sizeof(int64_t)));
    out.push_back(it == index.end() ? -1 : it->second);
  }
  return out;
}

TEST_F(SamplerTest, PartitionsAreDisjointShares) {
  const int64_t block = 256;
  std::set<int64_t> blocks[2];
  for (int part = 0; part < 2; ++part) {
    const MixtureSampler s(*set_, "train", {{"a", 1.0}}, 16, /*seed=*/5,
                           DataPartition{part, 2, /*seed=*/9, block});
    auto starts = window_starts(set_->shard("a", "train"), s.batch(0, 600));
    int unique = 0;
    for (int64_t st : starts) {
      ASSERT_NE(st, -1) << "window not found in the shard";
      if (st == -2) continue;
      ++unique;
      ASSERT_EQ(st / block, (st + 16) / block) << "window crosses its block";
      blocks[part].insert(st / block);
    }
    EXPECT_GT(unique, 200) << "too few windows could be located";
  }
  for (int64_t b : blocks[0]) EXPECT_EQ(blocks[1].count(b), 0u) << "block " << b << " in both";
  // Together the two parts draw from (nearly) every block of the shard.
  const int64_t n_blocks = set_->shard("a", "train").size() / block;
  EXPECT_GE(static_cast<int64_t>(blocks[0].size() + blocks[1].size()), n_blocks * 9 / 10);
  EXPECT_THROW(MixtureSampler(*set_, "train", {}, 16, 5, DataPartition{2, 2, 9, block}), Error);
  EXPECT_THROW(MixtureSampler(*set_, "train", {}, 16, 5, DataPartition{0, 1000, 9, block}), Error);
}

}  // namespace
}  // namespace btx
