// Tokenizer: training on a tiny 3-domain corpus, determinism, ids identical to sentencepiece's
// own spm_encode, lossless round trips on UTF-8 text and on arbitrary bytes, load errors, and
// domain chunking (line-aligned, within one file).
#include "btx/data/tokenizer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <sstream>

#include "btx/data/shards.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/subprocess.h"
#include "test_util.h"

namespace btx {
namespace {

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("btx-tok");
    testing::write_text(*dir_ / "corpus/prose.txt",
                        testing::tagged_lines('P', testing::kProseWords, 150'000, 1));
    testing::write_text(*dir_ / "corpus/code/a.py",
                        testing::tagged_lines('C', testing::kCodeWords, 60'000, 2));
    testing::write_text(*dir_ / "corpus/code/b.py",
                        testing::tagged_lines('D', testing::kCodeWords, 60'000, 3));
    testing::write_text(*dir_ / "corpus/dict.txt",
                        testing::tagged_lines('W', testing::kDictWords, 150'000, 4));
    const auto t0 = std::chrono::steady_clock::now();
    train_tokenizer(options(*dir_ / "tok.model"));
    train_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    tok_ = new Tokenizer(Tokenizer::load(*dir_ / "tok.model"));
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete dir_;
  }
  static TokenizerTrainOptions options(const fs::path& out) {
    TokenizerTrainOptions o;
    o.corpus = *dir_ / "corpus";
    o.out_model = out;
    o.vocab_size = 400;
    o.sample_bytes_per_domain = 60'000;
    o.seed = 7;
    return o;
  }
  static testing::TempDir* dir_;
  static Tokenizer* tok_;
  static double train_seconds_;
};
testing::TempDir* TokenizerTest::dir_ = nullptr;
Tokenizer* TokenizerTest::tok_ = nullptr;
double TokenizerTest::train_seconds_ = 0;

TEST_F(TokenizerTest, TrainsWithExpectedSpecials) {
  std::cout << "[ info ] tokenizer training (vocab 400, 3 x 60 KB): " << train_seconds_ << " s\n";
  EXPECT_EQ(tok_->vocab_size(), 400);
  EXPECT_EQ(tok_->unk_id(), 0);
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_id(), 2);
  EXPECT_EQ(tok_->sha256(), sha256_file(*dir_ / "tok.model"));
  // BPE learned merges: the domains' words take fewer tokens than bytes.
  const std::string text = "the lord said unto him and they went forth";
  EXPECT_LT(tok_->encode(text).size(), text.size() / 2);
  // The model file is the only thing written beside it (no temp leftovers).
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_->path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST_F(TokenizerTest, TrainingIsDeterministic) {
  train_tokenizer(options(*dir_ / "again/tok.model"));
  EXPECT_EQ(sha256_file(*dir_ / "again/tok.model"), sha256_file(*dir_ / "tok.model"));
  auto other = options(*dir_ / "again/other.model");
  other.seed = 8;
  train_tokenizer(other);  // another sample: still valid, usually a different model
  EXPECT_EQ(Tokenizer::load(*dir_ / "again/other.model").vocab_size(), 400);
}

TEST_F(TokenizerTest, RoundTripsUtf8Text) {
  const std::vector<std::string> texts = {
      "",
      "hello world",
      "  leading and trailing spaces  ",
      "tabs\tand\t\ttabs\n\nblank lines\n\n\n",
      "def f(x):\n    return x  # indented\n\t\treal tabs\r\n",
      "emoji 🙂🚀 and CJK 日本語のテキスト and accents é à ñ ß",
      "digits 1234567890 3.14159",
      "sentencepiece's own space mark ▁ and ▁▁ must survive, as must U+FFFD \xEF\xBF\xBD",
      std::string("a NUL \0 byte", 12),
      "zero width \u200b joiner \u200d and bom \ufeff",
      "math 𝄞 𝔸 and combining e\u0301",
  };
  for (const auto& t : texts) {
    const auto ids = tok_->encode(t);
    EXPECT_EQ(tok_->decode(ids), t) << "text: " << t;
    for (int32_t id : ids) {
      EXPECT_NE(id, tok_->unk_id());
      EXPECT_NE(id, tok_->bos_id());
    }
  }
}

TEST_F(TokenizerTest, RoundTripsRandomBytes) {
  std::mt19937_64 rng(123);
  for (int i = 0; i < 1000; ++i) {
    std::string s(rng() % 200, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
    ASSERT_EQ(tok_->decode(tok_->encode(s)), s) << "case " << i;
  }
  // Invalid UTF-8 bytes become their own byte pieces.
  const auto ids = tok_->encode("\xFF");
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(tok_->piece_text(ids[0]), "\xFF");
}

TEST_F(TokenizerTest, RoundTripsRandomCodePoints) {
  std::mt19937_64 rng(5);
  const auto append_utf8 = [](std::string& s, uint32_t c) {
    if (c < 0x80) {
      s += static_cast<char>(c);
    } else if (c < 0x800) {
      s += static_cast<char>(0xC0 | (c >> 6));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      s += static_cast<char>(0xE0 | (c >> 12));
      s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (c >> 18));
      s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    }
  };
  for (int i = 0; i < 500; ++i) {
    std::string s;
    const int n = static_cast<int>(rng() % 40);
    for (int k = 0; k < n; ++k) {
      uint32_t c = rng() % 4 == 0 ? static_cast<uint32_t>(rng() % 0x110000)
                                  : static_cast<uint32_t>(rng() % 0x3000);
      if (c >= 0xD800 && c < 0xE000) c = 0x2581;  // no surrogates; use the space mark instead
      append_utf8(s, c);
    }
    ASSERT_EQ(tok_->decode(tok_->encode(s)), s) << "case " << i;
  }
}

// The in-process BPE must give exactly sentencepiece's ids (spm_encode reads one line each).
void expect_same_ids_as_spm_encode(const Tokenizer& tok, const std::vector<std::string>& lines,
                                   const fs::path& dir) {
  std::string file;
  for (const auto& l : lines) file += l + "\n";
  testing::write_text(dir / "lines.txt", file);
  const auto r = run_process({"spm_encode", "--model=" + tok.path().string(), "--output_format=id",
                              (dir / "lines.txt").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream out(r.out);
  std::string row;
  for (const auto& l : lines) {
    ASSERT_TRUE(std::getline(out, row));
    std::istringstream ids(row);
    std::vector<int32_t> want;
    for (int32_t id; ids >> id;) want.push_back(id);
    ASSERT_EQ(tok.encode(l), want) << "line: " << l;
  }
}

bool have_spm_tools() {
  return run_process({"sh", "-c", "command -v spm_encode"}).exit_code == 0;
}

TEST_F(TokenizerTest, SameIdsAsSentencepiece) {
  if (!have_spm_tools()) GTEST_SKIP() << "spm_encode not installed";
  std::vector<std::string> lines;
  const std::string text = read_file(*dir_ / "corpus/prose.txt") +
                           read_file(*dir_ / "corpus/dict.txt") +
                           read_file(*dir_ / "corpus/code/a.py");
  std::istringstream in(text);
  for (std::string l; std::getline(in, l) && lines.size() < 3000;) lines.push_back(l);
  std::mt19937_64 rng(11);
  const std::vector<std::string> bits = {"the", " ",  "  ", "lord", "\t", "日本", "語",  "🙂",
                                         "é",   "12", "x",  "(",    ")",  "def",  "kind"};
  for (int i = 0; i < 500; ++i) {
    std::string l;
    for (int k = static_cast<int>(rng() % 20); k > 0; --k) l += bits[rng() % bits.size()];
    lines.push_back(l);
  }
  expect_same_ids_as_spm_encode(*tok_, lines, dir_->path());
}

TEST_F(TokenizerTest, ReadsOtherSentencepieceModels) {
  if (!have_spm_tools()) GTEST_SKIP() << "spm_train not installed";
  // A Llama-style model: dummy prefix, no byte pieces for some characters, unk runs.
  testing::write_text(*dir_ / "other/in.txt", read_file(*dir_ / "corpus/prose.txt"));
  const auto train = [&](const std::string& name, const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {"spm_train", "--input=" + (*dir_ / "other/in.txt").string(),
                                     "--model_prefix=" + (*dir_ / "other" / name).string(),
                                     "--vocab_size=200", "--minloglevel=2"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_EQ(run_process(argv).exit_code, 0);
  };
  train("llama", {"--model_type=bpe", "--normalization_rule_name=identity",
                  "--remove_extra_whitespaces=false", "--user_defined_symbols=lord,<tag>"});
  const Tokenizer llama = Tokenizer::load(*dir_ / "other/llama.model");
  expect_same_ids_as_spm_encode(
      llama, {"the lord said", " two  spaces", "unseen QZ chars 日本", "<tag>lord<tag>", "x"},
      dir_->path());
  EXPECT_EQ(llama.decode(llama.encode("the lord said")), "the lord said");
  train("unigram", {"--model_type=unigram"});
  try {
    Tokenizer::load(*dir_ / "other/unigram.model");
    FAIL() << "expected btx::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unigram"), std::string::npos) << e.what();
  }
}

TEST_F(TokenizerTest, LoadErrorsNameTheFile) {
  const fs::path missing = *dir_ / "nope.model";
  try {
    Tokenizer::load(missing);
    FAIL() << "expected btx::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }
  const fs::path junk = *dir_ / "junk/junk.model";
  testing::write_text(junk, "this is not a model");
  try {
    Tokenizer::load(junk);
    FAIL() << "expected btx::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(junk.string()), std::string::npos) << e.what();
  }
  EXPECT_THROW(tok_->decode({400}), Error);
  EXPECT_THROW(tok_->decode({-1}), Error);

  // A piece that is not UTF-8 (the first two-letter piece's bytes made an overlong NUL) is
  // refused with the file, the piece's id and the offset, not read into the vocabulary.
  std::string bytes = read_file(*dir_ / "tok.model");
  int32_t id = -1;
  size_t at = std::string::npos;
  for (int32_t i = 0; i < tok_->vocab_size() && at == std::string::npos; ++i) {
    const std::string p = tok_->decode({i});
    if (p.size() == 2 && std::isalpha(static_cast<unsigned char>(p[0])) &&
        std::isalpha(static_cast<unsigned char>(p[1]))) {
      at = bytes.find(std::string("\x0A\x02") + p);
      id = i;
    }
  }
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at + 2, 2, "\xC0\x80");
  const fs::path bad = *dir_ / "bad/overlong.model";
  testing::write_text(bad, bytes);
  const std::string e = testing::error_of([&] { Tokenizer::load(bad); });
  EXPECT_NE(e.find(fmt::format("tokenizer model {}: piece {} is not valid UTF-8: byte 0 is an "
                               "overlong encoding (C0 80",
                               bad.string(), id)),
            std::string::npos)
      << e;
}

TEST_F(TokenizerTest, TrainErrorsAreClear) {
  auto o = options(*dir_ / "bad/tok.model");
  o.domains = {"prose", "nosuch"};
  EXPECT_THROW(train_tokenizer(o), Error);
  o.domains = {};
  o.vocab_size = 60000;  // far more pieces than the sample holds
  try {
    train_tokenizer(o);
    FAIL() << "expected btx::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab_size 60000"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(*dir_ / "bad/tok.model"));
}

TEST_F(TokenizerTest, EncodeSpeed) {
  const std::string text = read_file(*dir_ / "corpus/prose.txt") +
                           read_file(*dir_ / "corpus/code/a.py") +
                           read_file(*dir_ / "corpus/dict.txt");
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok_->encode(text);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[ info ] encode: " << text.size() / 1e6 / s << " MB/s, "
            << static_cast<double>(text.size()) / ids.size() << " bytes/token\n";
  EXPECT_EQ(tok_->decode(ids), text);
}

TEST(DomainChunks, LineAlignedAndWithinOneFile) {
  testing::TempDir dir("btx-chunks");
  std::string a, b;
  for (int i = 0; i < 200; ++i) a += fmt::format("file a line {}\n", i);
  for (int i = 0; i < 3; ++i) b += fmt::format("file b line {}\n", i);
  b += std::string(500, 'x') + "é" + std::string(500, 'y');  // long line, no final newline
  testing::write_text(dir / "c/dom/1.txt", a);
  testing::write_text(dir / "c/dom/2.txt", b);
  const auto corpus = list_corpus(dir / "c");
  const DomainText d = read_domain_chunks(corpus.at(0), 256);
  std::string joined;
  for (size_t i = 0; i < d.chunks.size(); ++i) {
    const auto c = d.chunk(i);
    joined += c;
    EXPECT_LE(c.size(), 256u);
    // A chunk lies within one file: it never straddles the boundary at a.size().
    EXPECT_FALSE(d.chunks[i].first < a.size() && d.chunks[i].second > a.size());
    if (d.chunks[i].second <= a.size()) {
      EXPECT_EQ(c.back(), '\n');
    }
  }
  EXPECT_EQ(joined, a + b);
  for (size_t i = 0; i < d.chunks.size(); ++i) {  // cuts inside a line keep UTF-8 whole
    EXPECT_NE(static_cast<unsigned char>(d.text[d.chunks[i].first]) & 0xC0, 0x80);
  }
}

TEST(SeededPermutation, IsAPermutationAndSeeded) {
  auto p = seeded_permutation(1000, 1);
  auto q = seeded_permutation(1000, 1);
  auto r = seeded_permutation(1000, 2);
  EXPECT_EQ(p, q);
  EXPECT_NE(p, r);
  std::sort(p.begin(), p.end());
  for (size_t i = 0; i < p.size(); ++i) EXPECT_EQ(p[i], i);
}

}  // namespace
}  // namespace btx
