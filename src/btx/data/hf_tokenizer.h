// Hugging Face's tokenizer.json, natively: the BPE tokenizers of today's base models (byte-level:
// Llama 3.x, Qwen2/2.5/3, SmolLM2, GPT-2; sentencepiece-style written as tokenizer.json: Mistral,
// Llama 2 exports). The file's pipeline is read into a Pipeline and run as Hugging Face's
// `tokenizers` runs it: added tokens split out first, then the normalizer, the pre-tokenizers,
// BPE on each word. Anything else (WordPiece, Unigram, a normalizer, pre-tokenizer, decoder or
// option this code does not implement) is refused at load with its JSON path and value: never
// tokenized approximately. Internal to data/ (Tokenizer::load reads a tokenizer.json with it).
//
// Regular expressions run on Oniguruma, the engine Hugging Face's Rust library uses, with its
// default (Ruby) syntax and UTF-8: the files' patterns (\p{L}, \p{N}, (?i:...), (?!\S)) mean
// exactly what they mean there. NFC comes from utf8proc.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "btx/data/tokenizer_model.h"

namespace btx::hf {

class Regex;  // a compiled Oniguruma pattern (hf_encode.cpp)
std::shared_ptr<const Regex> compile_regex(const std::string& pattern, const std::string& where);

// The pattern GPT-2's ByteLevel pre-tokenizer splits with when use_regex is true.
inline constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct NormalizerStep {
  enum Kind { kNfc, kPrepend, kReplace } kind;
  std::string a, b;  // kPrepend: a; kReplace: a -> b (a literal string)
};

struct PreTokenizerStep {
  enum Kind { kSplit, kByteLevel, kDigits, kMetaspace } kind;
  std::shared_ptr<const Regex> regex;  // kSplit with a Regex pattern; kByteLevel with use_regex
  std::string pattern;                 // the regex's source
  std::string literal;                 // kSplit with a String pattern
  bool add_prefix_space = false;       // kByteLevel
  bool individual_digits = false;      // kDigits
  std::string replacement;             // kMetaspace ("▁")
  enum Prepend { kNever, kFirst, kAlways } prepend = kAlways;  // kMetaspace
  bool split = true;                                           // kMetaspace
};

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;  // a control token (bos, eos, chat markers), not text
};

struct Pipeline {
  std::vector<NormalizerStep> normalizer;
  std::vector<PreTokenizerStep> pre_tokenizer;
  std::vector<AddedToken> added;  // matched in the raw text, leftmost then longest
  std::array<std::vector<int>, 256> added_by_byte;  // indices into `added` by first byte
  // The BPE model.
  std::unordered_map<std::string, int32_t> vocab;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (left, right) -> rank, id
  bool ignore_merges = false, byte_fallback = false, fuse_unk = false;
  int32_t unk = -1;
  // With a ByteLevel pre-tokenizer words are byte-level strings, and a byte no valid UTF-8
  // holds is its own character's token; with byte_fallback, the <0xNN> token. -1: none.
  bool byte_level = false;
  std::array<int32_t, 256> byte_token;

  // The id of the token written `text` (an added token first, then the vocabulary); -1: none.
  int32_t token_id(const std::string& text) const;
};

// The character a ByteLevel pre-tokenizer writes for byte b (GPT-2's bytes_to_unicode), as UTF-8.
const std::string& byte_level_char(unsigned char b);

// Fills `m` (pieces, surface text, types, special ids, the pipeline) from tokenizer.json's
// text, and tokenizer_config.json's (bos_token, eos_token) when `config` is not empty. `file`
// names the file in errors.
void load_tokenizer_json(std::string_view json, std::string_view config, const fs::path& file,
                         Tokenizer::Model& m);

// The pre-tokenizer as Tokenizer::pre_tokenizer_steps spells it.
std::vector<std::string> pre_tokenizer_steps(const Pipeline& p);

// Plain encoding (no BOS/EOS), as `tokenizers` encodes without special tokens. Bytes that are
// not valid UTF-8 (which a Rust &str cannot hold) become their byte tokens.
std::vector<int32_t> encode(const Tokenizer::Model& m, std::string_view text);

}  // namespace btx::hf
