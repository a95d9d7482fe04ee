#include "btx/hf/tokenizer_json.h"

#include <algorithm>

#include "btx/util/error.h"

namespace btx {

namespace {

// Byte length of the UTF-8 character starting with byte `c` (1 for a stray continuation byte).
size_t char_len(unsigned char c) {
  return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
}

nlohmann::json piece_or_null(const Tokenizer& tok, int id) {
  return id >= 0 ? nlohmann::json(tok.piece(id)) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::json hf_tokenizer_json(const Tokenizer& tok) {
  const int V = tok.vocab_size();
  nlohmann::json vocab = nlohmann::json::object();
  nlohmann::json added = nlohmann::json::array();
  std::unordered_map<std::string, int> mergeable;  // pieces that BPE builds or starts from
  for (int id = 0; id < V; ++id) {
    const std::string& p = tok.piece(id);
    const int type = tok.piece_type(id);
    BTX_CHECK(type != spm::kUserDefined && type != spm::kUnused,
              "{}: piece {} '{}' is {}; tokenizer.json is written for models without "
              "user-defined or unused pieces",
              tok.path().string(), id, p, type == spm::kUserDefined ? "user-defined" : "unused");
    vocab[p] = id;
    if (type == spm::kNormal) mergeable.emplace(p, id);
    if (type == spm::kUnknown || type == spm::kControl) {
      added.push_back({{"id", id},
                       {"content", p},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", true}});
    }
  }
  // sentencepiece's BPE merges the adjacent pair whose concatenation is the highest-scoring
  // piece; HF's merges the pair of lowest rank. Every split of every piece into two pieces,
  // ranked by the piece's score (ties: lower id first), gives the same order.
  struct Merge {
    float score;
    int id;
    size_t cut;
  };
  std::vector<Merge> merges;
  for (const auto& [p, id] : mergeable) {
    for (size_t cut = char_len(p[0]); cut < p.size(); cut += char_len(p[cut])) {
      if (mergeable.count(p.substr(0, cut)) && mergeable.count(p.substr(cut))) {
        merges.push_back({tok.score(id), id, cut});
      }
    }
  }
  std::sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.id != b.id ? a.id < b.id : a.cut < b.cut;
  });
  nlohmann::json merge_list = nlohmann::json::array();
  for (const auto& m : merges) {
    const std::string& p = tok.piece(m.id);
    merge_list.push_back({p.substr(0, m.cut), p.substr(m.cut)});
  }

  const std::string space = "\xE2\x96\x81";
  nlohmann::json replace = {
      {"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space}};
  nlohmann::json normalizer = replace;
  if (tok.add_dummy_prefix()) {
    normalizer = {{"type", "Sequence"},
                  {"normalizers", {{{"type", "Prepend"}, {"prepend", space}}, replace}}};
  }
  nlohmann::json decoders = {
      {{"type", "Replace"}, {"pattern", {{"String", space}}}, {"content", " "}},
      {{"type", "ByteFallback"}},
      {{"type", "Fuse"}}};
  if (tok.add_dummy_prefix()) {
    decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  }
  const int unk = tok.unk_id();
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", normalizer},
          {"pre_tokenizer", nullptr},
          {"post_processor", nullptr},
          {"decoder", {{"type", "Sequence"}, {"decoders", decoders}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", piece_or_null(tok, unk)},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", true},
            {"byte_fallback", tok.byte_fallback()},
            {"ignore_merges", false},
            {"vocab", vocab},
            {"merges", merge_list}}}};
}

nlohmann::json hf_tokenizer_config(const Tokenizer& tok, int64_t model_max_length,
                                   const std::string& chat_template) {
  nlohmann::json decoder = nlohmann::json::object();
  for (int id : {tok.unk_id(), tok.bos_id(), tok.eos_id()}) {
    if (id < 0) continue;
    decoder[std::to_string(id)] = {{"content", tok.piece(id)}, {"lstrip", false},
                                   {"normalized", false},      {"rstrip", false},
                                   {"single_word", false},     {"special", true}};
  }
  // btx trains on the plain token stream: no BOS or EOS is added when encoding, and no space is
  // put before the text unless the sentencepiece model itself adds one.
  nlohmann::json j = {{"tokenizer_class", "LlamaTokenizer"},
                      {"added_tokens_decoder", decoder},
                      {"bos_token", piece_or_null(tok, tok.bos_id())},
                      {"eos_token", piece_or_null(tok, tok.eos_id())},
                      {"unk_token", piece_or_null(tok, tok.unk_id())},
                      {"pad_token", nullptr},
                      {"add_bos_token", false},
                      {"add_eos_token", false},
                      {"add_prefix_space", tok.add_dummy_prefix()},
                      {"legacy", true},
                      {"clean_up_tokenization_spaces", false},
                      {"spaces_between_special_tokens", false},
                      {"model_max_length", model_max_length},
                      {"sp_model_kwargs", nlohmann::json::object()}};
  if (!chat_template.empty()) j["chat_template"] = chat_template;
  return j;
}

}  // namespace btx
