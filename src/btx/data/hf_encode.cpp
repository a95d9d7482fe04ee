// Encoding with a tokenizer.json pipeline (hf_tokenizer.h), step for step as Hugging Face's
// `tokenizers` does it: added tokens first (leftmost, then longest), then on every other stretch
// the normalizer, the pre-tokenizers (each splitting or rewriting the words so far) and BPE on
// each word (the adjacent pair of lowest merge rank first, leftmost among equals: word.rs).
#include <oniguruma.h>
#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <queue>

#include "btx/data/hf_tokenizer.h"
#include "btx/util/error.h"
#include "btx/util/text.h"
#include "btx/util/utf8.h"

namespace btx::hf {

namespace {
void onig_init_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

}  // namespace

class Regex {
 public:
  Regex(const std::string& pattern, const std::string& where) : where_(where) {
    onig_init_once();
    OnigErrorInfo info;
    const auto* pat = reinterpret_cast<const OnigUChar*>(pattern.data());
    const int r = onig_new(&re_, pat, pat + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                           ONIG_SYNTAX_DEFAULT, &info);
    if (r != ONIG_NORMAL) {
      OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
      onig_error_code_to_str(msg, r, &info);
      fail("{}: the pattern '{}' is not a valid regular expression ({})", where, pattern,
           reinterpret_cast<const char*>(msg));
    }
  }
  ~Regex() { onig_free(re_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls emit(begin, end) for every non-empty match in s, left to right (an empty match moves
  // one character on, as Rust's onig find_iter; its empty split is dropped anyway).
  template <typename Emit>
  void find_all(const std::string& s, Emit emit) const;

 private:
  OnigRegex re_ = nullptr;
  std::string where_;  // the file and JSON path of the pattern, for errors
};

template <typename Emit>
void Regex::find_all(const std::string& s, Emit emit) const {
  OnigRegion* region = onig_region_new();
  const auto* str = reinterpret_cast<const OnigUChar*>(s.data());
  const auto* end = str + s.size();
  size_t at = 0;
  while (at <= s.size()) {
    const int r = onig_search(re_, str, end, str + at, end, region, ONIG_OPTION_NONE);
    if (r == ONIG_MISMATCH) break;
    if (r < 0) {  // e.g. the backtracking limit: never tokenize a text half split
      onig_region_free(region, 1);
      OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
      onig_error_code_to_str(msg, r);
      fail("{}: the pattern failed on a text of {} bytes ({})", where_, s.size(),
           reinterpret_cast<const char*>(msg));
    }
    const auto b = static_cast<size_t>(region->beg[0]), e = static_cast<size_t>(region->end[0]);
    if (e > b) {
      emit(b, e);
      at = e;
    } else if (b < s.size()) {
      at = b + std::max<size_t>(1, utf8_char_len(s, b));
    } else {
      break;
    }
  }
  onig_region_free(region, 1);
}

namespace {

// A word being pre-tokenized: its text and whether it starts the whole input (Metaspace's
// "first" prepend scheme).
struct Piece {
  std::string text;
  bool at_start = false;
};

// Splits every piece around `matches` of it (Isolated: each match and each stretch between
// matches becomes a piece; empty ones are dropped).
template <typename FindAll>
void split_isolated(std::vector<Piece>& pieces, FindAll find_all) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (auto& p : pieces) {
    size_t prev = 0;
    bool first = p.at_start;
    auto emit = [&](size_t a, size_t b) {
      if (a == b) return;
      out.push_back({p.text.substr(a, b - a), first && a == 0});
    };
    find_all(p.text, [&](size_t a, size_t b) {
      emit(prev, a);
      emit(a, b);
      prev = b;
    });
    emit(prev, p.text.size());
  }
  pieces.swap(out);
}

bool is_numeric(std::string_view s, size_t i, size_t len) {
  utf8proc_int32_t cp = 0;
  utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                   static_cast<utf8proc_ssize_t>(len), &cp);
  const auto cat = utf8proc_category(cp);
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL ||
         cat == UTF8PROC_CATEGORY_NO;  // Rust's char::is_numeric
}

std::string nfc(const std::string& s) {
  if (std::all_of(s.begin(), s.end(), [](char c) { return (c & 0x80) == 0; })) return s;  // ASCII
  utf8proc_uint8_t* out = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                              static_cast<utf8proc_ssize_t>(s.size()), &out,
                              static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) return s;  // valid UTF-8 only reaches here; keep it as it is otherwise
  std::string r(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return r;
}

// BPE on one word (word.rs merge_all): the word's characters, then merges of the adjacent
// pair with the lowest rank, leftmost first, until none applies.
void bpe_word(const Pipeline& p, const std::string& word, std::vector<int32_t>& out) {
  if (p.ignore_merges) {
    const auto it = p.vocab.find(word);
    if (it != p.vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int prev, next;
    bool alive;
  };
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  bool prev_unk = false;
  std::string ch;
  for (size_t i = 0; i < word.size();) {
    size_t len = utf8_char_len(word, i);
    if (len == 0) len = 1;  // cannot happen: words are valid UTF-8
    ch.assign(word, i, len);
    i += len;
    const auto it = p.vocab.find(ch);
    if (it != p.vocab.end()) {
      sym.push_back({it->second, 0, 0, true});
      prev_unk = false;
      continue;
    }
    if (p.byte_fallback) {
      bool all = true;
      for (unsigned char c : ch) all = all && p.byte_token[c] >= 0;
      if (all) {
        for (unsigned char c : ch) sym.push_back({p.byte_token[c], 0, 0, true});
        prev_unk = false;
        continue;
      }
    }
    if (p.unk < 0) continue;  // as `tokenizers`: a character without a token is dropped
    if (!(p.fuse_unk && prev_unk)) sym.push_back({p.unk, 0, 0, true});
    prev_unk = true;
  }
  const int n = static_cast<int>(sym.size());
  for (int k = 0; k < n; ++k) {
    sym[k].prev = k - 1;
    sym[k].next = k + 1 < n ? k + 1 : -1;
  }
  struct Merge {
    int32_t rank;
    int pos;
    int32_t id;
    bool operator>(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Merge, std::vector<Merge>, std::greater<Merge>> queue;
  auto find = [&](int32_t a, int32_t b) -> const std::pair<int32_t, int32_t>* {
    const auto it = p.merges.find((static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b));
    return it == p.merges.end() ? nullptr : &it->second;
  };
  for (int k = 0; k + 1 < n; ++k) {
    if (const auto* m = find(sym[k].id, sym[k + 1].id)) queue.push({m->first, k, m->second});
  }
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& left = sym[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = sym[left.next];
    const auto* m = find(left.id, right.id);
    if (!m || m->second != top.id) continue;  // stale
    left.id = top.id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) sym[left.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const auto* pm = find(sym[left.prev].id, left.id)) {
        queue.push({pm->first, left.prev, pm->second});
      }
    }
    if (left.next >= 0) {
      if (const auto* nm = find(left.id, sym[left.next].id)) {
        queue.push({nm->first, top.pos, nm->second});
      }
    }
  }
  for (int k = n > 0 ? 0 : -1; k >= 0; k = sym[k].next) out.push_back(sym[k].id);
}

// One stretch of valid UTF-8 without added tokens: normalizer, pre-tokenizers, BPE.
void encode_stretch(const Pipeline& p, std::string text, bool at_start, std::vector<int32_t>& out) {
  for (const auto& n : p.normalizer) {
    switch (n.kind) {
      case NormalizerStep::kNfc:
        text = nfc(text);
        break;
      case NormalizerStep::kPrepend:
        if (!text.empty()) text = n.a + text;
        break;
      case NormalizerStep::kReplace:
        text = replace_text(text, n.a, n.b);
        break;
    }
  }
  if (text.empty()) return;
  std::vector<Piece> pieces = {{std::move(text), at_start}};
  for (const auto& step : p.pre_tokenizer) {
    switch (step.kind) {
      case PreTokenizerStep::kSplit:
        if (step.regex) {
          split_isolated(pieces,
                         [&](const std::string& s, auto emit) { step.regex->find_all(s, emit); });
        } else {
          split_isolated(pieces, [&](const std::string& s, auto emit) {
            if (step.literal.empty()) return;
            for (size_t at = 0; (at = s.find(step.literal, at)) != std::string::npos;
                 at += step.literal.size()) {
              emit(at, at + step.literal.size());
            }
          });
        }
        break;
      case PreTokenizerStep::kDigits:
        split_isolated(pieces, [&](const std::string& s, auto emit) {
          size_t run = std::string::npos;  // start of a run of digits (contiguous)
          for (size_t i = 0; i < s.size();) {
            size_t len = std::max<size_t>(1, utf8_char_len(s, i));
            const bool digit = is_numeric(s, i, len);
            if (digit && step.individual_digits) emit(i, i + len);
            if (!step.individual_digits) {
              if (digit && run == std::string::npos) run = i;
              if (!digit && run != std::string::npos) {
                emit(run, i);
                run = std::string::npos;
              }
            }
            i += len;
          }
          if (run != std::string::npos) emit(run, s.size());
        });
        break;
      case PreTokenizerStep::kByteLevel:
        if (step.add_prefix_space) {
          for (auto& piece : pieces) {
            if (piece.text.empty() || piece.text[0] != ' ') piece.text = " " + piece.text;
          }
        }
        if (step.regex) {
          split_isolated(pieces,
                         [&](const std::string& s, auto emit) { step.regex->find_all(s, emit); });
        }
        for (auto& piece : pieces) {
          std::string mapped;
          mapped.reserve(piece.text.size() * 2);
          for (unsigned char c : piece.text) mapped += byte_level_char(c);
          piece.text = std::move(mapped);
        }
        break;
      case PreTokenizerStep::kMetaspace: {
        for (auto& piece : pieces) {
          piece.text = replace_text(piece.text, " ", step.replacement);
          const bool prepend = step.prepend == PreTokenizerStep::kAlways ||
                               (step.prepend == PreTokenizerStep::kFirst && piece.at_start);
          if (prepend && piece.text.compare(0, step.replacement.size(), step.replacement) != 0) {
            piece.text = step.replacement + piece.text;
          }
        }
        if (step.split) {  // MergedWithNext: each replacement starts a new word
          std::vector<Piece> out;
          for (auto& piece : pieces) {
            const std::string& s = piece.text;
            size_t start = 0;
            for (size_t at = s.find(step.replacement, 1); at != std::string::npos;
                 at = s.find(step.replacement, at + step.replacement.size())) {
              if (at == start) continue;
              out.push_back({s.substr(start, at - start), piece.at_start && start == 0});
              start = at;
            }
            out.push_back({s.substr(start), piece.at_start && start == 0});
          }
          pieces.swap(out);
        }
        break;
      }
    }
  }
  for (const auto& piece : pieces) bpe_word(p, piece.text, out);
}

// Text between added tokens: valid UTF-8 stretches through the pipeline, other bytes as their
// byte tokens.
void encode_text(const Pipeline& p, std::string_view text, bool at_start,
                 std::vector<int32_t>& out) {
  size_t run = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t len = utf8_char_len(text, i);
    if (len > 0) {
      i += len;
      continue;
    }
    if (i > run)
      encode_stretch(p, std::string(text.substr(run, i - run)), at_start && run == 0, out);
    const int32_t t = p.byte_token[static_cast<unsigned char>(text[i])];
    if (t >= 0) {
      out.push_back(t);
    } else if (p.unk >= 0) {
      out.push_back(p.unk);
    }
    run = ++i;
  }
  if (run < text.size())
    encode_stretch(p, std::string(text.substr(run)), at_start && run == 0, out);
}

}  // namespace

std::shared_ptr<const Regex> compile_regex(const std::string& pattern, const std::string& where) {
  return std::make_shared<const Regex>(pattern, where);
}

const std::string& byte_level_char(unsigned char b) {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    int n = 0;
    for (int c = 0; c < 256; ++c) {
      const bool printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
      const int cp = printable ? c : 256 + n++;
      utf8proc_uint8_t buf[4];
      const auto len = utf8proc_encode_char(cp, buf);
      t[c] = std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(len));
    }
    return t;
  }();
  return table[b];
}

std::vector<int32_t> encode(const Tokenizer::Model& m, std::string_view text) {
  const Pipeline& p = *m.hf;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  size_t from = 0;
  for (size_t i = 0; i < text.size();) {
    const AddedToken* hit = nullptr;
    for (int k : p.added_by_byte[static_cast<unsigned char>(text[i])]) {  // longest first
      const AddedToken& a = p.added[k];
      if (text.compare(i, a.content.size(), a.content) == 0) {
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    encode_text(p, text.substr(from, i - from), from == 0, out);
    out.push_back(hit->id);
    i += hit->content.size();
    from = i;
  }
  encode_text(p, text.substr(from), from == 0, out);
  return out;
}

}  // namespace btx::hf
