// The tokenizer: a sentencepiece BPE model (tokenizer.model, btx's own, trained by Debian's
// `spm_train` on a domain-balanced sample; Llama 2's), or a Hugging Face tokenizer.json (the
// byte-level BPE of Llama 3.x, Qwen2/2.5/3, SmolLM2; Mistral's and Llama 2's sentencepiece-style
// exports), encoded and decoded here behind one interface.
//  - sentencepiece: a re-implementation of its BPE (bit-identical ids, tested against
//    `spm_encode`): Debian's libsentencepiece embeds protobuf 3.14, which clashes with
//    LibTorch's protobuf 3.21 in one process.
//  - tokenizer.json: the file's own pipeline (data/hf_tokenizer.h: added tokens, normalizer,
//    pre-tokenizers with its regular expressions on Oniguruma, BPE), ids identical to Hugging
//    Face's tokenizers (tested on Meta's and Qwen's files); what it does not implement is refused
//    at load, naming the JSON path.
// decode(encode(s)) == s for ANY bytes (tokenizer.json: for text its normalizer leaves as it is).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace btx {

namespace fs = std::filesystem;

namespace spm {
// sentencepiece's piece types (Tokenizer::piece_type).
enum PieceType {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6
};
}  // namespace spm

struct TokenizerTrainOptions {
  fs::path corpus;                   // corpus folder (see corpus.h)
  std::vector<std::string> domains;  // empty = all domains of the corpus
  fs::path out_model;                // written atomically
  int vocab_size = 4096;
  int64_t sample_bytes_per_domain = 2'000'000;  // equal for every domain
  uint64_t seed = 0;
  int threads = 2;
  double character_coverage = 0.9995;   // rarer characters are left to the byte pieces
  std::string spm_train = "spm_train";  // the trainer program (Debian package `sentencepiece`)
};

// Trains a BPE model on `sample_bytes_per_domain` bytes of every domain: random ~4 KB
// line-aligned blocks from the whole of each domain (corpus files are sorted, so a prefix would
// be biased), one line per training sentence. Settings: byte_fallback, split_digits, identity
// normalisation, no dummy prefix, spaces kept as they are, whitespace-only pieces allowed (code
// indentation); unk=0, bos=1, eos=2, no pad. Newlines never reach the trainer, so "\n" is always
// the byte piece <0x0A>. Deterministic: same corpus, options and seed give the same file.
void train_tokenizer(const TokenizerTrainOptions& opts);

class Tokenizer {
 public:
  // Loads a sentencepiece BPE model with identity normalisation (btx's, Llama's), or a
  // tokenizer.json (its special tokens from the tokenizer_config.json beside it, when there);
  // errors name the file and what is unsupported (unigram models, NFKC normalisation, ...).
  static Tokenizer load(const fs::path& model);
  // A sentencepiece model from its bytes; `name` is used in messages.
  static Tokenizer from_bytes(std::string bytes, const fs::path& name);

  // Plain encoding, no BOS/EOS. Never fails. Valid UTF-8 is encoded exactly as sentencepiece
  // (or Hugging Face's tokenizers, without special tokens) would; invalid UTF-8 bytes and, for
  // sentencepiece, U+2581 "▁" (which it would turn into U+FFFD and a space) become byte pieces
  // (unk for a model without byte pieces). Text that spells a tokenizer.json's added token is
  // that token, as in Hugging Face's tokenizers.
  std::vector<int32_t> encode(std::string_view text) const;
  // Concatenates the pieces' text; a sentencepiece model's control ids (bos/eos) give "" (a
  // tokenizer.json's added tokens their text, as Hugging Face decodes them). Throws btx::Error
  // on an id out of range. For btx's models decode(encode(s)) == s for every byte string s.
  std::string decode(const std::vector<int32_t>& ids) const;
  // The text of one piece as decode() writes it ("▁" as a space, byte pieces as the raw byte).
  const std::string& piece_text(int32_t id) const;
  // The piece itself as stored in the model ("▁the", "<0x0A>", "<s>").
  const std::string& piece(int32_t id) const;

  // The piece's score (BPE merge priority: higher merges first; 0 for a tokenizer.json) and
  // sentencepiece type (spm::PieceType; a tokenizer.json's special added tokens are control,
  // its other added tokens user-defined, ids no token has unused).
  float score(int32_t id) const;
  int piece_type(int32_t id) const;
  // sentencepiece's normaliser flags: a "▁" put before the text (btx: no; Llama: yes); text
  // characters outside the vocabulary as byte pieces <0xNN> (btx: yes).
  bool add_dummy_prefix() const;
  bool byte_fallback() const;
  // A tokenizer.json's BPE as exporters rebuild it (gguf_export.h); all empty for sentencepiece:
  // its merges in rank order ("left right", the pieces as stored), whether it is byte-level, and
  // its pre-tokenizer steps: "Split:<regex>", "ByteLevel" ("ByteLevel:gpt2" with its GPT-2
  // split, "ByteLevel+prefix" with add_prefix_space), "Digits" ("Digits:individual"),
  // "Metaspace".
  std::vector<std::string> bpe_merges() const;
  bool byte_level() const;
  std::vector<std::string> pre_tokenizer_steps() const;
  // Whether it is a tokenizer.json (else a sentencepiece model).
  bool is_hf() const;

  int vocab_size() const;
  // -1 when the model has none (a tokenizer.json's: tokenizer_config.json's bos_token, else the
  // post-processor template's first special token; its eos_token).
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;  // -1 when the model has none (a tokenizer.json without unk_token)
  const fs::path& path() const;
  const std::string& sha256() const;  // of the model file's bytes

  struct Model;  // parsed model, shared by copies (defined in tokenizer_model.h)

 private:
  Tokenizer() = default;  // made by load() / from_bytes() only
  std::shared_ptr<const Model> m_;
  void encode_run(std::string_view text, bool at_start, std::vector<int32_t>& out) const;
};

namespace detail {
// Drops trainer_spec.input and .model_prefix (temporary paths) from a serialised model, so that
// training the same sample twice gives the same bytes. `name` is used in messages.
std::string strip_training_paths(std::string_view model, const fs::path& name);
}  // namespace detail

}  // namespace btx
