// tokenizer.json read natively (data/hf_tokenizer.h), on hand-made files whose ids are worked out
// by hand: byte-level BPE (merges by rank, leftmost first; both spellings of merges;
// ignore_merges; added tokens split out first, longest first), sentencepiece-style BPE (Prepend
// and Replace "▁", byte fallback, fused unknowns, the Strip decoder, the template's BOS), and
// every part btx does not implement refused with its JSON path and value.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "btx/data/tokenizer.h"
#include "test_util.h"

namespace btx {
namespace {

using nlohmann::json;
using testing::error_of;

// GPT-2-style byte level: "Ġ" is the space byte. Ranks: "b c" 0, "a b" 1, "Ġ ab" 2; "abc" is a
// token no merge makes.
json byte_level() {
  return json::parse(R"({
    "version": "1.0", "truncation": null, "padding": null,
    "added_tokens": [
      {"id": 9, "content": "<x>", "special": true, "normalized": false,
       "lstrip": false, "rstrip": false, "single_word": false},
      {"id": 10, "content": "<x>y", "special": false, "normalized": false,
       "lstrip": false, "rstrip": false, "single_word": false}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                      "use_regex": true},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false,
                       "use_regex": true},
    "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                "use_regex": true},
    "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
              "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
              "ignore_merges": false,
              "vocab": {"a": 0, "b": 1, "c": 2, "Ġ": 3, "ab": 4, "bc": 5, "Ġab": 6, "abc": 7,
                        "d": 8},
              "merges": ["b c", "a b", "Ġ ab"]}})");
}

// Llama 2's tokenizer.json layout: "▁" prepended and for spaces, byte fallback, <unk> fused.
json spm_style() {
  return json::parse(R"({
    "added_tokens": [
      {"id": 0, "content": "<unk>", "special": true, "normalized": false,
       "lstrip": false, "rstrip": false, "single_word": false},
      {"id": 1, "content": "<s>", "special": true, "normalized": false,
       "lstrip": false, "rstrip": false, "single_word": false},
      {"id": 2, "content": "</s>", "special": true, "normalized": false,
       "lstrip": false, "rstrip": false, "single_word": false}],
    "normalizer": {"type": "Sequence", "normalizers": [
      {"type": "Prepend", "prepend": "▁"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
    "pre_tokenizer": null,
    "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}}],
      "pair": [], "special_tokens": {}},
    "decoder": {"type": "Sequence", "decoders": [
      {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
      {"type": "ByteFallback"}, {"type": "Fuse"},
      {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true,
              "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "<0xC3>": 4, "<0xA9>": 5,
                        "▁": 6, "h": 7, "i": 8, "▁h": 9, "▁hi": 10},
              "merges": ["▁ h", "▁h i"]}})");
}

class HfTokenizerTest : public ::testing::Test {
 protected:
  Tokenizer load(const json& j, const std::string& config = "") {
    const fs::path dir = tmp_.path() / std::to_string(counter_++);
    testing::write_text(dir / "tokenizer.json", j.dump());
    if (!config.empty()) testing::write_text(dir / "tokenizer_config.json", config);
    return Tokenizer::load(dir / "tokenizer.json");
  }
  std::string refusal(const json& j) {
    return error_of([&] { load(j); });
  }
  testing::TempDir tmp_{"btx-hf-tokenizer"};
  int counter_ = 0;
};

using Ids = std::vector<int32_t>;

TEST_F(HfTokenizerTest, ByteLevelMergesByRankLeftmostFirst) {
  const Tokenizer tok = load(byte_level());
  EXPECT_EQ(tok.vocab_size(), 11);
  // "abc": (b,c) has the lower rank, so "bc" is made and "ab" never is; "abc" is no merge's.
  EXPECT_EQ(tok.encode("abc"), (Ids{0, 5}));
  // " ab" is one word (the GPT-2 pattern keeps the space with it): Ġ a b -> Ġ ab -> Ġab.
  EXPECT_EQ(tok.encode(" ab"), (Ids{6}));
  EXPECT_EQ(tok.encode("ab abc"), (Ids{4, 3, 0, 5}));
  EXPECT_EQ(tok.decode({6, 2}), " abc");
  EXPECT_EQ(tok.piece_text(3), " ");
  EXPECT_EQ(tok.piece(3), "Ġ");
  EXPECT_EQ(tok.bos_id(), -1);
  EXPECT_EQ(tok.unk_id(), -1);
  // Merges written as pairs are the same merges.
  json pairs = byte_level();
  pairs["model"]["merges"] = json::parse(R"([["b", "c"], ["a", "b"], ["Ġ", "ab"]])");
  EXPECT_EQ(load(pairs).encode("ab abc"), (Ids{4, 3, 0, 5}));
  // ignore_merges: a word that is a token is that token.
  json ignore = byte_level();
  ignore["model"]["ignore_merges"] = true;
  EXPECT_EQ(load(ignore).encode("abc"), (Ids{7}));
}

TEST_F(HfTokenizerTest, AddedTokensAreSplitOutFirstLongestFirst) {
  const Tokenizer tok = load(byte_level(), R"({"eos_token": {"content": "<x>"}})");
  EXPECT_EQ(tok.encode("a<x>yd<x>d"), (Ids{0, 10, 8, 9, 8}));
  EXPECT_EQ(tok.decode({0, 10, 8, 9}), "a<x>yd<x>");
  EXPECT_EQ(tok.eos_id(), 9);
  EXPECT_EQ(tok.piece_type(9), spm::kControl);
  EXPECT_EQ(tok.piece_type(10), spm::kUserDefined);
  EXPECT_EQ(tok.piece_type(0), spm::kNormal);
}

TEST_F(HfTokenizerTest, SentencepieceStyleWithByteFallback) {
  const Tokenizer tok = load(spm_style());
  // "▁hi▁hi\né": ▁ h -> ▁h, ▁h i -> ▁hi (twice); "\n" and "é" as their bytes.
  EXPECT_EQ(tok.encode("hi hi\n\xC3\xA9"), (Ids{10, 10, 3, 4, 5}));
  EXPECT_EQ(tok.decode({10, 10, 3, 4, 5}), "hi hi\n\xC3\xA9");  // the prepended space stripped
  // A character with neither a token nor byte tokens is <unk>; a run of them is one (fuse_unk).
  EXPECT_EQ(tok.encode("x"), (Ids{6, 0}));
  EXPECT_EQ(tok.encode("xyz hi"), (Ids{6, 0, 10}));
  EXPECT_EQ(tok.bos_id(), 1);  // the template's
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.piece_type(3), spm::kByte);
  EXPECT_EQ(tok.piece_text(3), "\n");
  EXPECT_TRUE(tok.add_dummy_prefix());
  EXPECT_TRUE(tok.byte_fallback());
}

TEST_F(HfTokenizerTest, NormalizersAndPreTokenizersOfTheFile) {
  json j = byte_level();
  // NFC first: "e" + U+0301 is "é" (C3 A9), whose bytes are byte-level characters.
  j["normalizer"] = {{"type", "NFC"}};
  j["model"]["vocab"]["Ã"] = 11;
  j["model"]["vocab"]["©"] = 12;
  j["model"]["vocab"]["e"] = 13;
  const Tokenizer nfc = load(j);
  EXPECT_EQ(nfc.encode("e\xCC\x81"), (Ids{11, 12}));
  EXPECT_EQ(nfc.decode({11, 12}), "\xC3\xA9");
  // Digits one by one, then a Split on a literal string, isolated.
  json d = byte_level();
  d["model"]["vocab"]["1"] = 11;
  d["model"]["vocab"]["2"] = 12;
  d["model"]["vocab"]["12"] = 13;
  d["model"]["merges"].push_back("1 2");
  d["pre_tokenizer"] = json::parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Digits", "individual_digits": true},
      {"type": "Split", "pattern": {"String": "b"}, "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]})");
  const Tokenizer digits = load(d);
  EXPECT_EQ(digits.encode("12"), (Ids{11, 12}));  // never merged: separate words
  EXPECT_EQ(digits.encode("abc"), (Ids{0, 1, 2}));
  d["pre_tokenizer"]["pretokenizers"][0]["individual_digits"] = false;
  EXPECT_EQ(load(d).encode("12"), (Ids{13}));
}

TEST_F(HfTokenizerTest, WhatBtxDoesNotImplementIsRefusedByPathAndValue) {
  auto with = [](const std::string& pointer, const json& v, json j = byte_level()) {
    j[json::json_pointer(pointer)] = v;
    return j;
  };
  auto refused = [&](const json& j, const std::string& part) {
    const std::string e = refusal(j);
    EXPECT_NE(e.find("tokenizer.json"), std::string::npos) << e;
    EXPECT_NE(e.find(part), std::string::npos) << e;
  };
  refused(with("/model/type", "WordPiece"), "model.type is \"WordPiece\"; btx implements BPE");
  refused(with("/model/type", "Unigram"), "model.type is \"Unigram\"");
  refused(with("/model/dropout", 0.1), "model.dropout is 0.1");
  refused(with("/model/continuing_subword_prefix", "##"), "model.continuing_subword_prefix");
  refused(with("/normalizer", json::parse(R"({"type": "Sequence", "normalizers":
                  [{"type": "NFC"}, {"type": "NFKC"}]})")),
          "normalizer.normalizers[1].type is \"NFKC\"");
  refused(with("/pre_tokenizer", json::parse(R"({"type": "Sequence", "pretokenizers": [
                  {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed",
                   "invert": false}]})")),
          "pre_tokenizer.pretokenizers[0].behavior is \"Removed\"");
  refused(with("/pre_tokenizer", json::parse(R"({"type": "Split", "pattern": {"Regex": "(a"},
                  "behavior": "Isolated", "invert": false})")),
          "pre_tokenizer.pattern.Regex: the pattern '(a' is not a valid regular expression");
  refused(with("/pre_tokenizer", json::parse(R"({"type": "BertPreTokenizer"})")),
          "pre_tokenizer.type is \"BertPreTokenizer\"");
  refused(with("/decoder", json::parse(R"({"type": "WordPiece", "prefix": "##"})")),
          "decoder.type is \"WordPiece\"");
  refused(with("/post_processor", json::parse(R"({"type": "BertProcessing"})")),
          "post_processor.type is \"BertProcessing\"");
  refused(with("/added_tokens/0/lstrip", true), "added_tokens[0].lstrip is true");
  refused(with("/model/merges/0", "x y"), "model.merges[0] is \"x y\"");
  refused(with("/model/merges/0", "a b c"),
          "model.merges[0] is \"a b c\"; expected \"left right\"");
  refused(with("/model/vocab/a", "zero"), "model.vocab[\"a\"] is \"zero\"");
  refused(with("/model/unk_token", "<nope>"), "model.unk_token is \"<nope>\"");
  refused(json::array(), "the file is []");
  json no_model = byte_level();
  no_model.erase("model");
  refused(no_model, "has no \"model\"");
  // Not JSON at all, and a config naming a token the file does not have.
  const fs::path bad = tmp_.path() / "bad" / "tokenizer.json";
  testing::write_text(bad, "{\"model\": ");
  EXPECT_NE(error_of([&] { Tokenizer::load(bad); }).find("not a tokenizer.json"),
            std::string::npos);
  const std::string e = error_of([&] { load(byte_level(), R"({"eos_token": "<eos>"})"); });
  EXPECT_NE(e.find("tokenizer_config.json: eos_token '<eos>' is not a token"), std::string::npos)
      << e;
}

}  // namespace
}  // namespace btx
