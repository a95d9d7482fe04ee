// sentencepiece BPE encoding and decoding without libsentencepiece: encoding follows
// sentencepiece's bpe_model.cc (repeatedly merge the adjacent pair whose concatenation is a
// piece with the highest score, leftmost first). The model file is read by tokenizer_load.cpp;
// training runs Debian's spm_train (tokenizer_train.cpp). Only identity normalisation is
// implemented (btx's and Llama's).
#include "btx/data/tokenizer.h"

#include <algorithm>

#include "btx/data/hf_tokenizer.h"
#include "btx/data/tokenizer_model.h"
#include "btx/util/error.h"
#include "btx/util/utf8.h"

namespace btx {

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
    if (m.types[it->second] == spm::kUnused) st.rev_merge[piece] = {view(l), view(r)};
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
        if (m.types[it->second] == spm::kUnused && rm != st.rev_merge.end()) {  // resegment
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
  norm.reserve(text.size() + text.size() / 4 + spm::kSpaceMark.size());
  if (m.add_dummy_prefix && at_start) norm += spm::kSpaceMark;
  for (char c : text) {
    if (c == ' ' && m.escape_whitespaces) {
      norm += spm::kSpaceMark;
    } else {
      norm += c;
    }
  }
  const std::string_view nv(norm);
  BpeState st;
  size_t a = 0;
  for (size_t i = 1; i < nv.size() && (m.cut_at_newlines || m.cut_at_spaces); ++i) {
    const bool cut =
        (m.cut_at_newlines && (nv[i] == '\n' || nv[i - 1] == '\n')) ||
        (m.cut_at_spaces && nv.compare(i, spm::kSpaceMark.size(), spm::kSpaceMark) == 0 &&
         !(i >= spm::kSpaceMark.size() &&
           nv.compare(i - spm::kSpaceMark.size(), spm::kSpaceMark.size(), spm::kSpaceMark) == 0));
    if (cut) {
      bpe(m, nv.substr(a, i - a), st, out);
      a = i;
    }
  }
  bpe(m, nv.substr(a), st, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  if (m_->hf) return hf::encode(*m_, text);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  size_t run = 0;  // start of the current run that goes through BPE
  for (size_t i = 0; i < text.size();) {
    const size_t len = utf8_char_len(text, i);
    const bool raw = len == 0 || (len == 3 && text.compare(i, 3, spm::kSpaceMark) == 0);
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
float Tokenizer::score(int32_t id) const {
  piece_text(id);
  return m_->scores[id];
}
int Tokenizer::piece_type(int32_t id) const {
  piece_text(id);
  return m_->types[id];
}
bool Tokenizer::add_dummy_prefix() const {
  return m_->add_dummy_prefix;
}
bool Tokenizer::byte_fallback() const {
  return m_->byte_fallback;
}
std::vector<std::string> Tokenizer::bpe_merges() const {
  if (!m_->hf) return {};
  std::vector<std::pair<int32_t, uint64_t>> ranked;  // rank, (left, right)
  for (const auto& [pair, rank_id] : m_->hf->merges) ranked.emplace_back(rank_id.first, pair);
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::string> out;
  out.reserve(ranked.size());
  for (const auto& [rank, pair] : ranked) {
    out.push_back(m_->pieces[pair >> 32] + " " + m_->pieces[pair & 0xffffffffu]);
  }
  return out;
}
bool Tokenizer::byte_level() const {
  return m_->hf && m_->hf->byte_level;
}
std::vector<std::string> Tokenizer::pre_tokenizer_steps() const {
  return m_->hf ? hf::pre_tokenizer_steps(*m_->hf) : std::vector<std::string>{};
}
bool Tokenizer::is_hf() const {
  return m_->hf != nullptr;
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
