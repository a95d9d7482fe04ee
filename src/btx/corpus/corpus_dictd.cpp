// dictd dictionaries (.index + dictzip'ed .dict.dz) and GCIDE's markup, for corpus_text.h.
// The .dict.dz is read whole with zlib (dictzip is gzip-compatible); random access through the
// dictzip chunk table is not needed when every entry is read once.
#include <algorithm>
#include <array>
#include <map>
#include <set>

#include "btx/corpus/corpus_text.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

uint64_t dictd_b64_decode(std::string_view digits) {
  static const std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  BTX_CHECK(!digits.empty() && digits.size() <= 10, "bad dictd number '{}'", digits);
  uint64_t v = 0;
  for (char c : digits) {
    const size_t d = kAlphabet.find(c);
    BTX_CHECK(d != std::string_view::npos, "bad dictd number '{}': '{}' is not a base64 digit",
              digits, c);
    v = v * 64 + d;
  }
  return v;
}

std::vector<DictdRange> dictd_entry_ranges(std::string_view index, const std::string& source) {
  std::vector<DictdRange> entries, meta;
  size_t line_no = 0;
  for (std::string_view line : split_lines(index)) {
    ++line_no;
    if (line.empty()) continue;
    const size_t t2 = line.rfind('\t');
    const size_t t1 = t2 == std::string_view::npos || t2 == 0 ? t2 : line.rfind('\t', t2 - 1);
    BTX_CHECK(t1 != std::string_view::npos && t1 > 0,
              "{} line {}: expected 'headword<TAB>offset<TAB>length'", source, line_no);
    const std::string_view head = line.substr(0, t1);
    DictdRange r;
    try {
      r.offset = dictd_b64_decode(line.substr(t1 + 1, t2 - t1 - 1));
      r.length = dictd_b64_decode(line.substr(t2 + 1));
    } catch (const Error& e) {
      fail("{} line {}: {}", source, line_no, e.what());
    }
    const bool is_meta = head.substr(0, 3) == "00-" || head.substr(0, 10) == "00database";
    (is_meta ? meta : entries).push_back(r);
  }
  // Longest first at equal offsets, so that a range inside the previous one is dropped.
  std::sort(entries.begin(), entries.end(), [](const DictdRange& a, const DictdRange& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.length > b.length;
  });
  std::vector<DictdRange> out;
  for (const auto& r : entries) {
    const bool overlaps_meta = std::any_of(meta.begin(), meta.end(), [&](const DictdRange& m) {
      return r.offset < m.offset + m.length && m.offset < r.offset + r.length;
    });
    if (overlaps_meta || r.length == 0) continue;
    if (!out.empty() && r.offset + r.length <= out.back().offset + out.back().length) continue;
    out.push_back(r);
  }
  return out;
}

std::vector<std::string> read_dictd_entries(const fs::path& index, const fs::path& dict) {
  const std::vector<DictdRange> ranges = dictd_entry_ranges(read_file(index), index.string());
  const std::string data = read_gzip(dict);
  std::vector<std::string> out;
  out.reserve(ranges.size());
  for (const auto& r : ranges) {
    BTX_CHECK(r.offset + r.length <= data.size(),
              "{} points past the end of {} (offset {} + length {} > {} bytes)", index.string(),
              dict.string(), r.offset, r.length, data.size());
    out.push_back(data.substr(r.offset, r.length));
  }
  BTX_CHECK(!out.empty(), "{} lists no entries", index.string());
  return out;
}

std::string strip_link_braces(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  int depth = 0;
  for (char c : text) {
    if (c == '{') {
      ++depth;
    } else if (c == '}') {
      if (depth > 0) {
        while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) out.pop_back();
        --depth;
      }
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

// Source tags name who contributed a sense ("[1913 Webster]", "[WordNet 1.5 +PJC]"); they are
// made of contributor names, version numbers and '+'. Usage labels ("[Obs.]") are not.
bool is_gcide_source_tag(std::string_view t) {
  static const std::set<std::string_view> kSources = {
      "Webster", "Webster's", "WordNet",  "PJC", "PJC.", "AS",  "RDH",  "RHUD", "Century",
      "MI11",    "CIDE",      "Chambers", "JC",  "JW",   "DPS", "NRCC", "Moby"};
  static const std::set<std::string_view> kFiller = {"Suppl.", "Suppl", "Dict.", "sense", "+"};
  bool has_source = false;
  size_t pos = 0;
  while (pos < t.size()) {
    const size_t a = t.find_first_not_of(" +", pos);
    if (a == std::string_view::npos) break;
    size_t b = t.find_first_of(" +", a);
    if (b == std::string_view::npos) b = t.size();
    const std::string_view w = t.substr(a, b - a);
    pos = b;
    if (kSources.count(w) != 0) {
      has_source = true;
    } else if (kFiller.count(w) == 0 &&
               w.find_first_not_of("0123456789.") != std::string_view::npos) {
      return false;
    }
  }
  return has_source;
}

// GCIDE's ASCII codes for letters it could not write: "[ae]" -> "æ", "[=e]" -> "ē", "[i^]" ->
// "ĭ", "['e]" -> "é". Unknown codes come back empty (and stay as they are).
std::string gcide_character(std::string_view code) {
  static const std::map<std::string_view, std::string_view> kNamed = {
      {"ae", "æ"},    {"AE", "Æ"},    {"oe", "œ"},    {"OE", "Œ"},      {"eth", "ð"},
      {"thorn", "þ"}, {"ng", "ŋ"},    {"deg", "°"},   {"sect", "§"},    {"root", "√"},
      {"add", "ä"},   {"aum", "ä"},   {"udd", "ü"},   {"imac", "ī"},    {"pi", "π"},
      {"phi", "φ"},   {"tau", "τ"},   {"=ae", "ǣ"},   {"=oo", "o͞o"},    {"oo^", "o͝o"},
      {"asl", "ā"},   {"th", "th"},   {"yogh", "ȝ"},  {"pounds", "£"},  {"alpha", "α"},
      {"beta", "β"},  {"gamma", "γ"}, {"delta", "δ"}, {"epsilon", "ε"}, {"lambda", "λ"},
      {"mu", "μ"},    {"sigma", "σ"}, {"omega", "ω"}, {"theta", "θ"},   {"Delta", "Δ"}};
  if (auto it = kNamed.find(code); it != kNamed.end()) return std::string(it->second);
  // Combining marks: a mark before the letter, or '^' after it for a breve.
  static const std::map<char, std::string_view> kMarks = {
      {'=', "\u0304"}, {'-', "\u0304"}, {'^', "\u0302"}, {'\'', "\u0301"}, {'`', "\u0300"},
      {'"', "\u0308"}, {'~', "\u0303"}, {'.', "\u0307"}, {',', "\u0327"}};
  const auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (code.size() == 2 && letter(code[1]) && kMarks.count(code[0]) != 0) {
    return std::string(1, code[1]) + std::string(kMarks.at(code[0]));
  }
  if (code.size() == 2 && letter(code[0]) && code[1] == '^') {
    return std::string(1, code[0]) + "\u0306";
  }
  return "";
}

// Drops the `\Pro*nun"ci*a`tion\` blocks after headwords (wrapped over at most one line break)
// with one space beside each.
std::string drop_headword_blocks(std::string_view e) {
  std::string out;
  size_t i = 0;
  while (i < e.size()) {
    size_t j = e[i] == '\\' ? e.find('\\', i + 1) : std::string_view::npos;
    if (j == std::string_view::npos || j - i > 160 ||
        std::count(e.begin() + i, e.begin() + j, '\n') > 1) {
      out += e[i++];
      continue;
    }
    if (!out.empty() && out.back() == ' ') {
      out.pop_back();
    } else if (j + 1 < e.size() && e[j + 1] == ' ') {
      ++j;
    }
    i = j + 1;
  }
  return out;
}

// Source tags dropped (with one space beside them) and character codes replaced, on one line.
std::string clean_gcide_line(std::string_view line) {
  std::string out;
  size_t i = 0;
  while (i < line.size()) {
    const char c = line[i];
    size_t j = c == '[' ? line.find(']', i + 1) : std::string_view::npos;
    if (j == std::string_view::npos) {
      out += c;
      ++i;
      continue;
    }
    const std::string_view inner = line.substr(i + 1, j - i - 1);
    if (is_gcide_source_tag(inner)) {
      if (!out.empty() && out.back() == ' ') {
        out.pop_back();
      } else if (j + 1 < line.size() && line[j + 1] == ' ') {
        ++j;
      }
    } else if (std::string ch = gcide_character(inner); !ch.empty()) {
      out += ch;
    } else {  // a usage label or an etymology: keep it, but look inside it for codes
      out += c;
      ++i;
      continue;
    }
    i = j + 1;
  }
  return out;
}

}  // namespace

std::string clean_gcide_entry(std::string_view raw) {
  const std::string entry = drop_headword_blocks(raw);
  std::string out;
  for (std::string_view line : split_lines(entry)) {
    const std::string cleaned = clean_gcide_line(line);
    const bool emptied = cleaned.find_first_not_of(" \t") == std::string::npos &&
                         line.find_first_not_of(" \t") != std::string_view::npos;
    if (!emptied) out += cleaned + "\n";
  }
  return strip_link_braces(out);
}

}  // namespace btx
