// Token shards: manifest vs files, equal budgets, disjoint strided splits drawn from the whole
// domain, determinism (also across thread counts), too-small domains, newer formats, damage.
#include "btx/data/shards.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <regex>
#include <set>

#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "test_util.h"
#include "tokenizer_util.h"

namespace btx {
namespace {

class ShardsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("btx-shards");
    testing::write_text(*dir_ / "corpus/prose.txt",
                        testing::tagged_lines('P', testing::kProseWords, 200'000, 1));
    testing::write_text(*dir_ / "corpus/code/a.py",
                        testing::tagged_lines('C', testing::kCodeWords, 100'000, 2));
    testing::write_text(*dir_ / "corpus/code/b.py",
                        testing::tagged_lines('D', testing::kCodeWords, 100'000, 3));
    testing::write_text(*dir_ / "corpus/dict.txt",
                        testing::tagged_lines('W', testing::kDictWords, 300'000, 4));
    testing::write_text(*dir_ / "small/tiny.txt",
                        testing::tagged_lines('T', testing::kProseWords, 3'000, 5));
    testing::write_text(*dir_ / "small/prose.txt",
                        testing::tagged_lines('P', testing::kProseWords, 200'000, 1));
    tok_ = new Tokenizer(Tokenizer::load(
        testing::train_test_tokenizer(*dir_ / "corpus", *dir_ / "tok.model", 400, 60'000)));
    prepare_shards(options(*dir_ / "data"), *tok_);
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete dir_;
  }
  static ShardOptions options(const fs::path& out) {
    ShardOptions o;
    o.corpus = *dir_ / "corpus";
    o.out = out;
    o.train_tokens = 30'000;
    o.valid_tokens = 3'000;
    o.test_tokens = 3'000;
    o.chunk_bytes = 1024;
    o.seed = 3;
    return o;
  }
  // Complete line tags ("P#000123#") in the decoded text of one split.
  static std::set<std::string> tags(const ShardSet& set, const std::string& domain,
                                    const std::string& split) {
    const auto& shard = set.shard(domain, split);
    const torch::Tensor t = shard.slice(0, shard.size());  // [n]
    std::vector<int32_t> ids(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
    const std::string text = tok_->decode(ids);
    static const std::regex kTag("[A-Z]#[0-9]{6}#");
    std::set<std::string> out;
    for (std::sregex_iterator it(text.begin(), text.end(), kTag), end; it != end; ++it) {
      out.insert(it->str());
    }
    return out;
  }
  static testing::TempDir* dir_;
  static Tokenizer* tok_;
};
testing::TempDir* ShardsTest::dir_ = nullptr;
Tokenizer* ShardsTest::tok_ = nullptr;

TEST_F(ShardsTest, ManifestMatchesFiles) {
  const ShardSet set = ShardSet::open(*dir_ / "data");
  const auto& m = set.manifest();
  EXPECT_EQ(m["format_version"], 1);
  EXPECT_EQ(m["dtype"], "uint16");
  EXPECT_EQ(m["vocab_size"], 400);
  EXPECT_EQ(m["tokenizer_sha256"], sha256_file(*dir_ / "tok.model"));
  EXPECT_EQ(set.domains(), (std::vector<std::string>{"code", "dict", "prose"}));
  for (const auto& d : set.domains()) {
    for (const char* split : kSplits) {
      const fs::path file = *dir_ / "data" / d / (std::string(split) + ".bin");
      const auto tokens = m["domains"][d][split]["tokens"].get<int64_t>();
      EXPECT_EQ(static_cast<int64_t>(fs::file_size(file)), 2 * tokens) << file;
      EXPECT_EQ(set.shard(d, split).size(), tokens);
      EXPECT_EQ(m["domains"][d][split]["sha256"], sha256_file(file));
      EXPECT_GT(m["domains"][d][split]["chunks"].get<int>(), 0);
    }
  }
  EXPECT_TRUE(set.verify_checksums());
  EXPECT_NO_THROW(set.check_tokenizer(*tok_));
  for (const auto& e : fs::directory_iterator(dir_->path())) {  // no temp folders left over
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
}

TEST_F(ShardsTest, EqualBudgetsAndValidTokens) {
  const ShardSet set = ShardSet::open(*dir_ / "data");
  for (const auto& d : set.domains()) {
    EXPECT_EQ(set.shard(d, "train").size(), 30'000) << d;
    EXPECT_EQ(set.shard(d, "valid").size(), 3'000) << d;
    EXPECT_EQ(set.shard(d, "test").size(), 3'000) << d;
    const torch::Tensor t = set.shard(d, "train").slice(0, 30'000);  // [n]
    EXPECT_GE(t.min().item<int64_t>(), 0);
    EXPECT_LT(t.max().item<int64_t>(), 400);
    // Chunks end with EOS, and there are several of them.
    EXPECT_GT((t == tok_->eos_id()).sum().item<int64_t>(), 10);
  }
}

TEST_F(ShardsTest, SplitsAreDisjointAndSpanTheDomain) {
  const ShardSet set = ShardSet::open(*dir_ / "data");
  for (const auto& d : set.domains()) {
    const auto train = tags(set, d, "train");
    const auto valid = tags(set, d, "valid");
    const auto test = tags(set, d, "test");
    EXPECT_GT(valid.size(), 20u);
    for (const auto& tag : valid) EXPECT_EQ(train.count(tag) + test.count(tag), 0u) << tag;
    for (const auto& tag : test) EXPECT_EQ(train.count(tag), 0u) << tag;
    // Drawn from the whole domain, not its first bytes: lines from the last quarter appear.
    const int last = std::stoi(train.rbegin()->substr(2, 6));
    const int first = std::stoi(train.begin()->substr(2, 6));
    EXPECT_LT(first, last / 10) << d;
  }
  // The folder domain draws from both of its files.
  const auto code = tags(set, "code", "train");
  EXPECT_TRUE(std::any_of(code.begin(), code.end(), [](auto& t) { return t[0] == 'C'; }));
  EXPECT_TRUE(std::any_of(code.begin(), code.end(), [](auto& t) { return t[0] == 'D'; }));
}

TEST_F(ShardsTest, DeterministicAcrossRunsAndThreads) {
  auto o = options(*dir_ / "data2");
  o.threads = 1;
  prepare_shards(o, *tok_);
  const auto a = ShardSet::open(*dir_ / "data").manifest();
  const auto b = ShardSet::open(*dir_ / "data2").manifest();
  EXPECT_EQ(a["domains"], b["domains"]);
  o.seed = 4;
  prepare_shards(o, *tok_);  // replaces data2 atomically
  const auto c = ShardSet::open(*dir_ / "data2").manifest();
  EXPECT_NE(a["domains"]["prose"]["train"]["sha256"], c["domains"]["prose"]["train"]["sha256"]);
  EXPECT_EQ(c["seed"], 4);
}

TEST_F(ShardsTest, TooSmallDomainIsNamed) {
  auto o = options(*dir_ / "data_small");
  o.corpus = *dir_ / "small";
  try {
    prepare_shards(o, *tok_);
    FAIL() << "expected btx::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("domain 'tiny' is too small for the chosen split"), std::string::npos)
        << msg;
  }
  EXPECT_FALSE(fs::exists(*dir_ / "data_small"));
  // With a budget the domain can meet, it works; a partly filled split is allowed.
  o.train_tokens = 600;
  o.valid_tokens = 0;
  o.test_tokens = 0;
  o.domains = {"tiny"};
  o.chunk_bytes = 256;
  prepare_shards(o, *tok_);
  EXPECT_EQ(ShardSet::open(o.out).shard("tiny", "valid").size(), 0);
  EXPECT_EQ(min_split_tokens(50'000), 2'500);
  EXPECT_EQ(min_split_tokens(1'000), 1'000);
  EXPECT_EQ(min_split_tokens(10'000), 2'048);
}

TEST_F(ShardsTest, RejectsNewerFormatAndDamage) {
  const fs::path copy = *dir_ / "damaged";
  fs::copy(*dir_ / "data", copy, fs::copy_options::recursive);
  auto m = nlohmann::json::parse(read_file(copy / "manifest.json"));
  m["format_version"] = 2;
  write_file_atomic(copy / "manifest.json", m.dump());
  try {
    ShardSet::open(copy);
    FAIL() << "expected btx::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("written by a newer btx (format 2 > 1)"),
              std::string::npos)
        << e.what();
  }
  m["format_version"] = 1;
  m["tokenizer_sha256"] = "0000";
  write_file_atomic(copy / "manifest.json", m.dump());
  ASSERT_NO_THROW(ShardSet::open(copy));
  EXPECT_THROW(ShardSet::open(copy).check_tokenizer(*tok_), Error);  // made with another one
  // A shard cut short: named by path.
  fs::resize_file(copy / "prose/valid.bin", 100);
  try {
    ShardSet::open(copy);
    FAIL() << "expected btx::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("prose/valid.bin"), std::string::npos) << e.what();
  }
  fs::resize_file(copy / "prose/valid.bin", 101);  // not a whole number of uint16
  EXPECT_THROW(ShardSet::open(copy), Error);
  EXPECT_THROW(ShardSet::open(*dir_ / "nothing-here"), Error);
  // Same size, other bytes: only the checksum notices.
  fs::copy_file(*dir_ / "data/prose/valid.bin", copy / "prose/valid.bin",
                fs::copy_options::overwrite_existing);
  {
    std::fstream f(copy / "prose/train.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10);
    f.put('\x01');
  }
  std::vector<fs::path> bad;
  EXPECT_FALSE(ShardSet::open(copy).verify_checksums(&bad));
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_EQ(bad[0].filename(), "train.bin");
}

TEST_F(ShardsTest, ShardSliceAndLookupErrors) {
  const ShardSet set = ShardSet::open(*dir_ / "data");
  const auto& shard = set.shard("dict", "train");
  const torch::Tensor s = shard.slice(100, 7);  // [7]
  ASSERT_EQ(s.dtype(), torch::kLong);
  ASSERT_EQ(s.numel(), 7);
  for (int64_t i = 0; i < 7; ++i) EXPECT_EQ(s[i].item<int64_t>(), shard.at(100 + i));
  EXPECT_THROW(shard.slice(shard.size() - 3, 4), Error);
  EXPECT_THROW(shard.slice(-1, 2), Error);
  EXPECT_THROW(set.shard("nosuch", "train"), Error);
  EXPECT_THROW(set.shard("dict", "dev"), Error);
}

}  // namespace
}  // namespace btx
