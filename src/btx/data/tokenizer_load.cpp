// Reading a sentencepiece model file: a minimal protobuf reader (libsentencepiece's own would
// bring protobuf 3.14 into a process with LibTorch's 3.21), the pieces and the trainer and
// normaliser settings that change encoding, checked against what the encoder implements.
#include <algorithm>
#include <cctype>
#include <cstring>

#include "btx/data/hf_tokenizer.h"
#include "btx/data/tokenizer.h"
#include "btx/data/tokenizer_model.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/utf8.h"

namespace btx {

namespace {

// Just enough protobuf wire format for sentencepiece's ModelProto.
struct ProtoReader {
  std::string_view buf;
  const fs::path& file;
  size_t pos = 0;

  bool done() const { return pos >= buf.size(); }
  [[noreturn]] void bad() const {
    fail("tokenizer model {} is not a sentencepiece model (malformed protobuf at byte {})",
         file.string(), pos);
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= buf.size()) bad();
      const auto b = static_cast<unsigned char>(buf[pos++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    bad();
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > buf.size() - pos) bad();
    const auto s = buf.substr(pos, n);
    pos += n;
    return s;
  }
  float fixed32() {
    if (buf.size() - pos < 4) bad();
    float f;
    std::memcpy(&f, buf.data() + pos, 4);  // little-endian host
    pos += 4;
    return f;
  }
  void skip(int wire) {
    if (wire == 0) {
      varint();
    } else if (wire == 2) {
      bytes();
    } else if (wire == 1 || wire == 5) {
      if (buf.size() - pos < (wire == 1 ? 8u : 4u)) bad();
      pos += wire == 1 ? 8 : 4;
    } else {
      bad();
    }
  }
};

void append_varint(std::string& out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out += static_cast<char>((v & 0x7F) | 0x80);
  out += static_cast<char>(v);
}

}  // namespace

namespace detail {

std::string strip_training_paths(std::string_view model, const fs::path& name) {
  ProtoReader r{model, name};
  std::string out;
  while (!r.done()) {
    const size_t start = r.pos;
    const uint64_t tag = r.varint();
    if (tag == ((2 << 3) | 2)) {
      const std::string_view spec = r.bytes();
      ProtoReader s{spec, name};
      std::string kept;
      while (!s.done()) {
        const size_t st = s.pos;
        const uint64_t t = s.varint();
        s.skip(static_cast<int>(t & 7));
        if ((t >> 3) != 1 && (t >> 3) != 2) kept.append(spec.substr(st, s.pos - st));
      }
      append_varint(out, tag);
      append_varint(out, kept.size());
      out += kept;
    } else {
      r.skip(static_cast<int>(tag & 7));
      out.append(model.substr(start, r.pos - start));
    }
  }
  return out;
}

}  // namespace detail

Tokenizer Tokenizer::load(const fs::path& model) {
  BTX_CHECK(fs::is_regular_file(model),
            "tokenizer model {} does not exist (train one with `btx tokenizer train`)",
            model.string());
  if (model.extension() == ".json") {
    // Hugging Face's tokenizer.json, with the special tokens of the tokenizer_config.json
    // beside it.
    auto m = std::make_shared<Model>();
    m->path = model;
    const std::string text = read_file(model);
    m->sha256 = sha256_hex(text);
    const fs::path config = model.parent_path() / "tokenizer_config.json";
    hf::load_tokenizer_json(text, fs::is_regular_file(config) ? read_file(config) : "", model, *m);
    Tokenizer t;
    t.m_ = std::move(m);
    return t;
  }
  return from_bytes(read_file(model), model);
}

namespace {
// The fields of trainer_spec and normalizer_spec that change encoding, with proto defaults.
struct Spec {
  int model_type = 1;  // UNIGRAM
  bool byte_fallback = false, ws_suffix = false;
  std::string unk_surface = " \xE2\x81\x87 ", bos_piece = "<s>", eos_piece = "</s>";
  std::string norm_name;
  bool charsmap = false, add_dummy_prefix = true, remove_extra_ws = true, escape_ws = true;
};

void read_piece(ProtoReader s, Tokenizer::Model& m) {
  std::string piece;
  float score = 0;
  int type = spm::kNormal;
  while (!s.done()) {
    const uint64_t t = s.varint();
    if (t == ((1 << 3) | 2)) {
      piece = std::string(s.bytes());
    } else if (t == ((2 << 3) | 5)) {
      score = s.fixed32();
    } else if (t == ((3 << 3) | 0)) {
      type = static_cast<int>(s.varint());
    } else {
      s.skip(static_cast<int>(t & 7));
    }
  }
  m.pieces.push_back(std::move(piece));
  m.scores.push_back(score);
  m.types.push_back(type);
}

// Reads trainer_spec (field 2) or normalizer_spec (field 3) into `spec`.
void read_spec(ProtoReader s, int field, Spec& spec) {
  while (!s.done()) {
    const uint64_t t = s.varint();
    const auto f = t >> 3;
    const int w = static_cast<int>(t & 7);
    if (field == 2 && w == 0 && (f == 3 || f == 24 || f == 35)) {
      const auto v = s.varint();
      if (f == 3) spec.model_type = static_cast<int>(v);
      if (f == 24) spec.ws_suffix = v != 0;
      if (f == 35) spec.byte_fallback = v != 0;
    } else if (field == 2 && w == 2 && (f == 44 || f == 46 || f == 47)) {
      (f == 44 ? spec.unk_surface : f == 46 ? spec.bos_piece : spec.eos_piece) = s.bytes();
    } else if (field == 3 && w == 2 && f == 1) {
      spec.norm_name = s.bytes();
    } else if (field == 3 && w == 2 && f == 2) {
      spec.charsmap = !s.bytes().empty();
    } else if (field == 3 && w == 0 && f >= 3 && f <= 5) {
      const bool v = s.varint() != 0;
      (f == 3 ? spec.add_dummy_prefix : f == 4 ? spec.remove_extra_ws : spec.escape_ws) = v;
    } else {
      s.skip(w);
    }
  }
}
}  // namespace

Tokenizer Tokenizer::from_bytes(std::string bytes, const fs::path& name) {
  auto m = std::make_shared<Model>();
  m->path = name;
  m->sha256 = sha256_hex(bytes);
  Spec spec;
  ProtoReader r{bytes, name};
  while (!r.done()) {
    const uint64_t tag = r.varint();
    const auto field = static_cast<int>(tag >> 3);
    if ((tag & 7) != 2 || field < 1 || field > 3) {
      r.skip(static_cast<int>(tag & 7));
    } else if (field == 1) {
      read_piece(ProtoReader{r.bytes(), name}, *m);
    } else {
      read_spec(ProtoReader{r.bytes(), name}, field, spec);
    }
  }
  const std::string file = name.string();
  for (size_t id = 0; id < m->pieces.size(); ++id) {
    check_utf8(m->pieces[id], fmt::format("tokenizer model {}: piece {}", file, id));
  }
  BTX_CHECK(!m->pieces.empty(), "tokenizer model {} is not a sentencepiece model (no pieces)",
            file);
  const int mt = spec.model_type;
  BTX_CHECK(mt == 2, "tokenizer model {} is a {} model; btx reads sentencepiece BPE models only",
            file,
            mt == 1   ? "unigram"
            : mt == 3 ? "word"
                      : "char");
  BTX_CHECK(!spec.charsmap && !spec.remove_extra_ws && !spec.ws_suffix,
            "tokenizer model {} uses normalisation '{}'{}; btx implements identity "
            "normalisation only (as in btx's and Llama's models)",
            file, spec.norm_name, spec.remove_extra_ws ? " with remove_extra_whitespaces" : "");
  m->byte_fallback = spec.byte_fallback;
  m->add_dummy_prefix = spec.add_dummy_prefix;
  m->escape_whitespaces = spec.escape_ws;
  const std::string& unk_surface = spec.unk_surface;
  const std::string& bos_piece = spec.bos_piece;
  const std::string& eos_piece = spec.eos_piece;
  const auto v = static_cast<int32_t>(m->pieces.size());
  m->surface.resize(v);
  m->unk = -1;
  for (int32_t id = 0; id < v; ++id) {
    const std::string& p = m->pieces[id];
    const int type = m->types[id];
    if (type == spm::kNormal || type == spm::kUserDefined || type == spm::kUnused) {
      BTX_CHECK(m->mergeable.emplace(p, id).second, "tokenizer model {}: piece '{}' appears twice",
                file, p);
      if (type == spm::kUserDefined) m->user_defined.push_back(p);
      if (type == spm::kUnused) m->has_unused = true;
    }
    if (type == spm::kUnknown && m->unk < 0) m->unk = id;
    if (type == spm::kControl && p == bos_piece) m->bos = id;
    if (type == spm::kControl && p == eos_piece) m->eos = id;
    if (type == spm::kControl) continue;
    if (type == spm::kUnknown) {
      m->surface[id] = unk_surface;
    } else if (type == spm::kByte) {
      const int byte = spm::byte_piece_value(p);
      BTX_CHECK(byte >= 0, "tokenizer model {}: byte piece '{}' is not of the form <0xNN>", file,
                p);
      m->surface[id] = std::string(1, static_cast<char>(byte));
    } else {
      std::string& s = m->surface[id];
      for (size_t i = 0; i < p.size();) {
        const bool mark = p.compare(i, spm::kSpaceMark.size(), spm::kSpaceMark) == 0;
        s += mark ? std::string_view(" ") : std::string_view(p).substr(i, 1);
        i += mark ? spm::kSpaceMark.size() : 1;
      }
    }
  }
  BTX_CHECK(m->unk >= 0, "tokenizer model {} has no unknown piece (<unk>)", file);
  m->cut_at_newlines = m->user_defined.empty();
  m->cut_at_spaces = m->user_defined.empty();
  for (const auto& [p, id] : m->mergeable) {
    if (p.size() > 1 && p.find('\n') != std::string_view::npos) m->cut_at_newlines = false;
    for (size_t k = p.find(spm::kSpaceMark, 1); k != std::string_view::npos;
         k = p.find(spm::kSpaceMark, k + 1)) {
      if (k < spm::kSpaceMark.size() ||
          p.compare(k - spm::kSpaceMark.size(), spm::kSpaceMark.size(), spm::kSpaceMark) != 0) {
        m->cut_at_spaces = false;
      }
    }
  }
  std::sort(m->user_defined.begin(), m->user_defined.end(),
            [](auto a, auto b) { return a.size() > b.size(); });
  m->byte_id.assign(256, m->unk);
  for (int32_t id = 0; id < v; ++id) {
    if (m->types[id] == spm::kByte) m->byte_id[static_cast<unsigned char>(m->surface[id][0])] = id;
  }
  Tokenizer t;
  t.m_ = std::move(m);
  return t;
}

}  // namespace btx
