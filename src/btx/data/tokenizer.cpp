// sentencepiece BPE without libsentencepiece: the model file is read with a minimal protobuf
// reader, and encoding follows sentencepiece's bpe_model.cc (repeatedly merge the adjacent pair
// whose concatenation is a piece with the highest score, leftmost first). Training runs Debian's
// spm_train on a sample file. Only identity normalisation is implemented (btx's and Llama's).
#include "btx/data/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <unordered_map>

#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581, sentencepiece's space
enum PieceType {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6
};

// Length of the well-formed UTF-8 character at s[i] (RFC 3629: no overlong forms, no
// surrogates, at most U+10FFFF), or 0 when the byte there does not start one.
size_t utf8_char_len(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const size_t left = s.size() - i;
  const unsigned c = b(0);
  if (c < 0x80) return 1;
  const auto cont = [&](size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if ((c == 0xE0 && b(1) < 0xA0) || (c == 0xED && b(1) > 0x9F)) return 0;  // overlong, UTF-16
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if ((c == 0xF0 && b(1) < 0x90) || (c == 0xF4 && b(1) > 0x8F)) return 0;  // overlong, >10FFFF
    return 4;
  }
  return 0;
}

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

struct Tokenizer::Model {
  fs::path path;
  std::string sha256;
  std::vector<std::string> pieces;                          // [V]
  std::vector<float> scores;                                // [V]
  std::vector<int> types;                                   // [V] PieceType
  std::vector<std::string> surface;                         // [V] decode text of each id
  std::unordered_map<std::string_view, int32_t> mergeable;  // normal, user-defined, unused
  std::vector<std::string_view> user_defined;               // longest first
  std::vector<int32_t> byte_id;                             // [256] <0xNN>, or unk
  int32_t unk = 0, bos = -1, eos = -1;
  bool byte_fallback = false, add_dummy_prefix = false, escape_whitespaces = true;
  bool has_unused = false;
  bool cut_at_newlines = false;  // no piece joins "\n" to another character
  bool cut_at_spaces = false;    // "▁" only starts pieces (or follows another "▁")
};

Tokenizer Tokenizer::load(const fs::path& model) {
  BTX_CHECK(fs::is_regular_file(model),
            "tokenizer model {} does not exist (train one with `btx tokenizer train`)",
            model.string());
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
  int type = kNormal;
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
    if (type == kNormal || type == kUserDefined || type == kUnused) {
      BTX_CHECK(m->mergeable.emplace(p, id).second, "tokenizer model {}: piece '{}' appears twice",
                file, p);
      if (type == kUserDefined) m->user_defined.push_back(p);
      if (type == kUnused) m->has_unused = true;
    }
    if (type == kUnknown && m->unk < 0) m->unk = id;
    if (type == kControl && p == bos_piece) m->bos = id;
    if (type == kControl && p == eos_piece) m->eos = id;
    if (type == kControl) continue;
    if (type == kUnknown) {
      m->surface[id] = unk_surface;
    } else if (type == kByte) {
      const bool ok = p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>' &&
                      std::isxdigit(static_cast<unsigned char>(p[3])) &&
                      std::isxdigit(static_cast<unsigned char>(p[4]));
      BTX_CHECK(ok, "tokenizer model {}: byte piece '{}' is not of the form <0xNN>", file, p);
      m->surface[id] = std::string(1, static_cast<char>(std::stoi(p.substr(3, 2), nullptr, 16)));
    } else {
      std::string& s = m->surface[id];
      for (size_t i = 0; i < p.size();) {
        const bool mark = p.compare(i, kSpaceMark.size(), kSpaceMark) == 0;
        s += mark ? std::string_view(" ") : std::string_view(p).substr(i, 1);
        i += mark ? kSpaceMark.size() : 1;
      }
    }
  }
  BTX_CHECK(m->unk >= 0, "tokenizer model {} has no unknown piece (<unk>)", file);
  m->cut_at_newlines = m->user_defined.empty();
  m->cut_at_spaces = m->user_defined.empty();
  for (const auto& [p, id] : m->mergeable) {
    if (p.size() > 1 && p.find('\n') != std::string_view::npos) m->cut_at_newlines = false;
    for (size_t k = p.find(kSpaceMark, 1); k != std::string_view::npos;
         k = p.find(kSpaceMark, k + 1)) {
      if (k < kSpaceMark.size() ||
          p.compare(k - kSpaceMark.size(), kSpaceMark.size(), kSpaceMark) != 0) {
        m->cut_at_spaces = false;
      }
    }
  }
  std::sort(m->user_defined.begin(), m->user_defined.end(),
            [](auto a, auto b) { return a.size() > b.size(); });
  m->byte_id.assign(256, m->unk);
  for (int32_t id = 0; id < v; ++id) {
    if (m->types[id] == kByte) m->byte_id[static_cast<unsigned char>(m->surface[id][0])] = id;
  }
  Tokenizer t;
  t.m_ = std::move(m);
  return t;
}

namespace {
struct Symbol {
  uint32_t begin, len;  // bytes of the segment; len 0 once merged into its left neighbour
  int prev, next;       // neighbours, -1 at the ends
  bool freeze;          // user-defined symbols are never merged
};
struct Candidate {
  float score;
  int left, right;
  uint32_t size;
};
struct CandidateLess {  // sentencepiece's order: higher score first, then leftmost
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};
// Work space of one encode() call, reused across its segments.
struct BpeState {
  std::vector<Symbol> sym;
  std::vector<Candidate> heap;
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> rev_merge;
  std::vector<std::string_view> stack;
  bool prev_unk = false;
};

// sentencepiece's bpe::Model::Encode on one segment of normalised text, then its processor's
// handling of unknown pieces (byte fallback, or one unk per run of unknowns).
void bpe(const Tokenizer::Model& m, std::string_view nv, BpeState& st, std::vector<int32_t>& out) {
  if (nv.empty()) return;
  auto& sym = st.sym;
  sym.clear();
  for (size_t i = 0; i < nv.size();) {
    size_t len = 0;
    for (auto ud : m.user_defined) {
      if (nv.compare(i, ud.size(), ud) == 0) {
        len = ud.size();
        break;
      }
    }
    const bool freeze = len > 0;
    if (len == 0) len = std::max<size_t>(1, utf8_char_len(nv, i));  // valid: see encode()
    const int k = static_cast<int>(sym.size());
    sym.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(len), k - 1, k + 1, freeze});
    i += len;
  }
  sym.back().next = -1;
  auto& heap = st.heap;
  heap.clear();
  st.rev_merge.clear();
  const auto view = [&](int k) { return nv.substr(sym[k].begin, sym[k].len); };
  const auto maybe_add = [&](int l, int r) {
    if (l < 0 || r < 0 || sym[l].freeze || sym[r].freeze) return;
    const auto piece = nv.substr(sym[l].begin, sym[l].len + sym[r].len);
    const auto it = m.mergeable.find(piece);
    if (it == m.mergeable.end()) return;
    heap.push_back({m.scores[it->second], l, r, static_cast<uint32_t>(piece.size())});
    std::push_heap(heap.begin(), heap.end(), CandidateLess());
    if (m.types[it->second] == kUnused) st.rev_merge[piece] = {view(l), view(r)};
  };
  for (int k = 1; k < static_cast<int>(sym.size()); ++k) maybe_add(k - 1, k);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), CandidateLess());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& l = sym[top.left];
    Symbol& r = sym[top.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != top.size) continue;  // stale
    l.len += r.len;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = top.left;
    r.len = 0;
    maybe_add(l.prev, top.left);
    maybe_add(top.left, l.next);
  }
  for (int k = 0; k != -1; k = sym[k].next) {
    st.stack.push_back(view(k));
    while (!st.stack.empty()) {
      const std::string_view w = st.stack.back();
      st.stack.pop_back();
      const auto it = m.mergeable.find(w);
      if (it != m.mergeable.end()) {
        const auto rm = m.has_unused ? st.rev_merge.find(w) : st.rev_merge.end();
        if (m.types[it->second] == kUnused && rm != st.rev_merge.end()) {  // resegment
          st.stack.push_back(rm->second.second);
          st.stack.push_back(rm->second.first);
          continue;
        }
        out.push_back(it->second);
        st.prev_unk = false;
      } else if (m.byte_fallback) {  // a character outside the vocabulary: its UTF-8 bytes
        for (unsigned char c : w) out.push_back(m.byte_id[c]);
        st.prev_unk = false;
      } else {
        if (!st.prev_unk) out.push_back(m.unk);
        st.prev_unk = true;
      }
    }
  }
}
}  // namespace

// Normalises (space -> "▁", dummy prefix) and runs BPE segment by segment: cutting before a
// "▁" that follows another character, and around "\n", changes nothing when no piece could
// span the cut (checked at load), and keeps the merge queues short.
void Tokenizer::encode_run(std::string_view text, bool at_start, std::vector<int32_t>& out) const {
  const Model& m = *m_;
  if (text.empty()) return;
  std::string norm;
  norm.reserve(text.size() + text.size() / 4 + kSpaceMark.size());
  if (m.add_dummy_prefix && at_start) norm += kSpaceMark;
  for (char c : text) {
    if (c == ' ' && m.escape_whitespaces) {
      norm += kSpaceMark;
    } else {
      norm += c;
    }
  }
  const std::string_view nv(norm);
  BpeState st;
  size_t a = 0;
  for (size_t i = 1; i < nv.size() && (m.cut_at_newlines || m.cut_at_spaces); ++i) {
    const bool cut = (m.cut_at_newlines && (nv[i] == '\n' || nv[i - 1] == '\n')) ||
                     (m.cut_at_spaces && nv.compare(i, kSpaceMark.size(), kSpaceMark) == 0 &&
                      !(i >= kSpaceMark.size() &&
                        nv.compare(i - kSpaceMark.size(), kSpaceMark.size(), kSpaceMark) == 0));
    if (cut) {
      bpe(m, nv.substr(a, i - a), st, out);
      a = i;
    }
  }
  bpe(m, nv.substr(a), st, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  size_t run = 0;  // start of the current run that goes through BPE
  for (size_t i = 0; i < text.size();) {
    const size_t len = utf8_char_len(text, i);
    const bool raw = len == 0 || (len == 3 && text.compare(i, 3, kSpaceMark) == 0);
    if (!raw) {
      i += len;
      continue;
    }
    encode_run(text.substr(run, i - run), run == 0, out);
    const size_t n = len == 0 ? 1 : len;
    for (size_t k = 0; k < n; ++k)
      out.push_back(m_->byte_id[static_cast<unsigned char>(text[i + k])]);
    i += n;
    run = i;
  }
  encode_run(text.substr(run), run == 0, out);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) {
    const std::string& s = piece_text(id);
    if (m_->add_dummy_prefix && out.empty() && !s.empty() && s[0] == ' ') {
      out.append(s, 1, std::string::npos);  // the dummy prefix sentencepiece added
    } else {
      out += s;
    }
  }
  return out;
}

const std::string& Tokenizer::piece_text(int32_t id) const {
  BTX_CHECK(id >= 0 && id < vocab_size(),
            "token id {} is out of range for tokenizer {} (vocab "
            "size {})",
            id, m_->path.string(), vocab_size());
  return m_->surface[id];
}
const std::string& Tokenizer::piece(int32_t id) const {
  piece_text(id);  // range check
  return m_->pieces[id];
}
int Tokenizer::vocab_size() const {
  return static_cast<int>(m_->pieces.size());
}
int Tokenizer::bos_id() const {
  return m_->bos;
}
int Tokenizer::eos_id() const {
  return m_->eos;
}
int Tokenizer::unk_id() const {
  return m_->unk;
}
const fs::path& Tokenizer::path() const {
  return m_->path;
}
const std::string& Tokenizer::sha256() const {
  return m_->sha256;
}

}  // namespace btx
