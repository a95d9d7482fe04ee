// Reading tokenizer.json (hf_tokenizer.h): every part of the file that changes the ids or the
// text is read and checked; what this code does not implement is an error naming the JSON path
// and the value found.
#include "btx/data/hf_tokenizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "btx/data/hf_json_reader.h"
#include "btx/data/tokenizer_config.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/text.h"
#include "btx/util/utf8.h"

namespace btx::hf {

namespace {

// A decoder as per-token text rules (Replace, ByteFallback, ByteLevel, Metaspace) and whether
// the decoded text loses one leading space (Strip after Fuse; Metaspace's prepended space).
struct Decoder {
  bool byte_level = false, byte_fallback = false, strip_space = false;
  std::vector<std::pair<std::string, std::string>> replace;
};

void read_decoder(const Reader& r, const json& n, const std::string& path, Decoder& d,
                  bool& fused) {
  if (n.is_null()) return;
  const std::string t = r.type(n, path);
  if (t == "Sequence") {
    const json& list = r.at(n, path, "decoders");
    if (!list.is_array()) r.refuse(path + ".decoders", list, "expected a list");
    for (size_t i = 0; i < list.size(); ++i) {
      read_decoder(r, list[i], fmt::format("{}.decoders[{}]", path, i), d, fused);
    }
    return;
  }
  if (t == "Fuse") {
    fused = true;
    return;
  }
  if (t == "Strip") {
    const json& content = r.at(n, path, "content");
    const json& start = r.at(n, path, "start");
    const json& stop = r.at(n, path, "stop");
    if (!fused || content != " " || !start.is_number_integer() || start.get<int64_t>() > 1 ||
        stop != 0) {
      r.refuse(path, n, "btx implements Strip of one leading \" \" after Fuse");
    }
    d.strip_space = start.get<int64_t>() == 1;
    return;
  }
  if (fused) r.refuse(path + ".type", t, "btx implements only Strip after Fuse");
  if (t == "ByteLevel") {
    d.byte_level = true;
  } else if (t == "ByteFallback") {
    d.byte_fallback = true;
  } else if (t == "Replace") {
    const auto [pat, regex] = r.pattern(n, path);
    if (regex) r.refuse(path + ".pattern", n.at("pattern"), "btx implements Replace of a String");
    d.replace.emplace_back(pat, r.text(n, path, "content"));
  } else if (t == "Metaspace") {
    const std::string rep = r.text(n, path, "replacement");
    d.replace.emplace_back(rep, " ");
    const bool prepends = n.contains("prepend_scheme")
                              ? r.text(n, path, "prepend_scheme") != "never"
                              : r.flag(n, path, "add_prefix_space", true);
    d.strip_space = d.strip_space || prepends;
  } else {
    r.refuse(path + ".type", t,
             "btx implements the decoders ByteLevel, Metaspace, Replace, ByteFallback, Fuse, "
             "Strip and Sequence");
  }
}

std::string decode_piece(const Decoder& d, const std::string& piece) {
  if (d.byte_fallback) {
    const int b = spm::byte_piece_value(piece);
    if (b >= 0) return std::string(1, static_cast<char>(b));
  }
  std::string s = piece;
  for (const auto& [from, to] : d.replace) s = replace_text(s, from, to);
  if (!d.byte_level) return s;
  static const std::unordered_map<std::string, char> inverse = [] {
    std::unordered_map<std::string, char> m;
    for (int b = 0; b < 256; ++b)
      m[byte_level_char(static_cast<unsigned char>(b))] = static_cast<char>(b);
    return m;
  }();
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const size_t len = std::max<size_t>(1, utf8_char_len(s, i));
    const auto it = inverse.find(s.substr(i, len));
    if (it != inverse.end()) {
      out += it->second;
    } else {
      out.append(s, i, len);
    }
    i += len;
  }
  return out;
}

// A token named in tokenizer_config.json (special_token_text): its id; null or absent: -1.
int32_t config_token(const Reader& r, const json& config, const char* key, const Pipeline& p) {
  const std::string config_file = (r.file.parent_path() / "tokenizer_config.json").string();
  const auto name = special_token_text(config, key, config_file);
  if (!name) return -1;
  const int32_t id = p.token_id(*name);
  if (id < 0) fail("{}: {} '{}' is not a token of {}", config_file, key, *name, r.file.string());
  return id;
}

}  // namespace

std::vector<std::string> pre_tokenizer_steps(const Pipeline& p) {
  std::vector<std::string> out;
  for (const auto& s : p.pre_tokenizer) {
    switch (s.kind) {
      case PreTokenizerStep::kSplit:
        out.push_back("Split:" + (s.regex ? s.pattern : s.literal));
        break;
      case PreTokenizerStep::kByteLevel:
        out.push_back(std::string("ByteLevel") + (s.add_prefix_space ? "+prefix" : "") +
                      (s.regex ? ":gpt2" : ""));
        break;
      case PreTokenizerStep::kDigits:
        out.push_back(s.individual_digits ? "Digits:individual" : "Digits");
        break;
      case PreTokenizerStep::kMetaspace:
        out.push_back("Metaspace");
        break;
    }
  }
  return out;
}

int32_t Pipeline::token_id(const std::string& text) const {
  for (const auto& a : added) {
    if (a.content == text) return a.id;
  }
  const auto it = vocab.find(text);
  return it == vocab.end() ? -1 : it->second;
}

void load_tokenizer_json(std::string_view text, std::string_view config_text, const fs::path& file,
                         Tokenizer::Model& m) {
  const Reader r{file};
  check_utf8(text, file.string());
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: not a tokenizer.json ({})", file.string(), e.what());
  }
  if (!j.is_object()) r.refuse("the file", j, "expected a tokenizer.json object");
  auto p = std::make_shared<Pipeline>();
  p->byte_token.fill(-1);

  // The model.
  const json& model = r.at(j, "the file", "model");
  const std::string kind = model.contains("type") ? r.type(model, "model") : "BPE";
  if (kind != "BPE") {
    r.refuse("model.type", kind,
             "btx implements BPE tokenizers (WordPiece and Unigram ones are refused)");
  }
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"] != 0) {
    r.refuse("model.dropout", model["dropout"], "BPE-dropout samples tokenizations; expected null");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model[key].is_null() && model[key] != "") {
      r.refuse(std::string("model.") + key, model[key], "btx implements null or \"\"");
    }
  }
  const json& vocab = r.at(model, "model", "vocab");
  if (!vocab.is_object()) r.refuse("model.vocab", vocab, "expected an object of token: id");
  int32_t size = 0;
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 30)) {
      r.refuse("model.vocab[\"" + token + "\"]", id, "expected a token id");
    }
    p->vocab.emplace(token, id.get<int32_t>());
    size = std::max(size, id.get<int32_t>() + 1);
  }
  const json& merges = r.at(model, "model", "merges");
  if (!merges.is_array()) r.refuse("model.merges", merges, "expected a list");
  p->merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& mg = merges[i];
    std::string a, b;
    if (mg.is_string()) {
      const std::string s = mg.get<std::string>();
      const auto space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        r.refuse(fmt::format("model.merges[{}]", i), mg, "expected \"left right\"");
      }
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      a = mg[0].get<std::string>();
      b = mg[1].get<std::string>();
    } else {
      r.refuse(fmt::format("model.merges[{}]", i), mg, "expected \"left right\" or [left, right]");
    }
    const auto ia = p->vocab.find(a), ib = p->vocab.find(b), ic = p->vocab.find(a + b);
    if (ia == p->vocab.end() || ib == p->vocab.end() || ic == p->vocab.end()) {
      r.refuse(fmt::format("model.merges[{}]", i), mg,
               "a merge of tokens that are not in model.vocab (or whose join is not)");
    }
    const uint64_t key =
        (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint32_t>(ib->second);
    p->merges.emplace(key, std::make_pair(static_cast<int32_t>(i), ic->second));  // first wins
  }
  p->ignore_merges = r.flag(model, "model", "ignore_merges", false);
  p->byte_fallback = r.flag(model, "model", "byte_fallback", false);
  p->fuse_unk = r.flag(model, "model", "fuse_unk", false);
  if (model.contains("unk_token") && !model["unk_token"].is_null()) {
    const std::string unk = r.text(model, "model", "unk_token");
    const auto it = p->vocab.find(unk);
    if (it == p->vocab.end()) r.refuse("model.unk_token", unk, "expected a token of model.vocab");
    p->unk = it->second;
  }

  // Added tokens.
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    const json& added = j["added_tokens"];
    if (!added.is_array()) r.refuse("added_tokens", added, "expected a list");
    for (size_t i = 0; i < added.size(); ++i) {
      const std::string path = fmt::format("added_tokens[{}]", i);
      const json& a = added[i];
      const json& id = r.at(a, path, "id");
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 30)) {
        r.refuse(path + ".id", id, "expected a token id");
      }
      const std::string content = r.text(a, path, "content");
      if (content.empty()) r.refuse(path + ".content", content, "expected a token's text");
      for (const char* key : {"lstrip", "rstrip", "single_word"}) {
        if (r.flag(a, path, key, false)) {
          r.refuse(path + "." + key, true, "btx matches added tokens as they are (false)");
        }
      }
      const bool special = r.flag(a, path, "special", false);
      if (r.flag(a, path, "normalized", !special) && !j["normalizer"].is_null()) {
        r.refuse(path + ".normalized", true,
                 "an added token matched after normalization; btx matches them in the raw text");
      }
      p->added.push_back({content, id.get<int32_t>(), special});
      size = std::max(size, id.get<int32_t>() + 1);
    }
  }
  std::stable_sort(p->added.begin(), p->added.end(), [](const AddedToken& x, const AddedToken& y) {
    return x.content.size() > y.content.size();
  });
  for (size_t k = 0; k < p->added.size(); ++k) {
    p->added_by_byte[static_cast<unsigned char>(p->added[k].content[0])].push_back(
        static_cast<int>(k));
  }

  r.normalizer(j.contains("normalizer") ? j["normalizer"] : json(), "normalizer", *p);
  r.pre_tokenizer(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(), "pre_tokenizer", *p);
  int32_t bos = -1;
  bool adds_bos = false;
  r.post_processor(j.contains("post_processor") ? j["post_processor"] : json(), "post_processor",
                   *p, bos, adds_bos);
  Decoder d;
  bool fused = false;
  read_decoder(r, j.contains("decoder") ? j["decoder"] : json(), "decoder", d, fused);

  // The byte tokens: a byte-level model's byte characters, or <0xNN>.
  for (int b = 0; b < 256; ++b) {
    const auto c = static_cast<unsigned char>(b);
    const auto it = p->byte_level ? p->vocab.find(byte_level_char(c))
                                  : p->vocab.find(fmt::format("<0x{:02X}>", b));
    if (it != p->vocab.end() && (p->byte_level || p->byte_fallback)) p->byte_token[b] = it->second;
  }

  // The pieces as Tokenizer serves them.
  m.pieces.assign(size, "");
  m.types.assign(size, spm::kUnused);
  m.scores.assign(size, 0.0f);
  for (const auto& [token, id] : p->vocab) {
    m.pieces[id] = token;
    m.types[id] = id == p->unk                                            ? spm::kUnknown
                  : p->byte_fallback && spm::byte_piece_value(token) >= 0 ? spm::kByte
                                                                          : spm::kNormal;
  }
  for (const auto& a : p->added) {
    m.pieces[a.id] = a.content;
    m.types[a.id] = a.special ? spm::kControl : spm::kUserDefined;
  }
  m.surface.resize(size);
  for (int32_t id = 0; id < size; ++id) m.surface[id] = decode_piece(d, m.pieces[id]);
  m.unk = p->unk;
  m.byte_fallback = p->byte_fallback;
  m.add_dummy_prefix = d.strip_space;

  json config;
  if (!config_text.empty()) {
    check_utf8(config_text, (file.parent_path() / "tokenizer_config.json").string());
    try {
      config = json::parse(config_text);
    } catch (const json::exception& e) {
      fail("{}: not JSON ({})", (file.parent_path() / "tokenizer_config.json").string(), e.what());
    }
  }
  const int32_t config_bos = config_token(r, config, "bos_token", *p);
  m.bos = config_bos >= 0 ? config_bos : bos;
  m.eos = config_token(r, config, "eos_token", *p);
  m.hf = std::move(p);
}

}  // namespace btx::hf
