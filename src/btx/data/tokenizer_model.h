// The parsed form of a sentencepiece model, shared by the loader (tokenizer_load.cpp: the
// protobuf file to this) and the encoder (tokenizer.cpp). Internal to data/.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "btx/data/tokenizer.h"

namespace btx {

namespace hf {
struct Pipeline;  // hf_tokenizer.h
}  // namespace hf

namespace spm {
inline constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581, sentencepiece's space

// The byte a byte piece stands for ("<0x0A>" -> 0x0A, hex digits in either case); -1 when
// `piece` is not one.
inline int byte_piece_value(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  int v = 0;
  for (const char c : piece.substr(3, 2)) {
    const int d = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                         : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}
}  // namespace spm

struct Tokenizer::Model {
  fs::path path;
  std::string sha256;
  std::vector<std::string> pieces;                          // [V]
  std::vector<float> scores;                                // [V]
  std::vector<int> types;                                   // [V] PieceType
  std::vector<std::string> surface;                         // [V] decode text of each id
  std::unordered_map<std::string_view, int32_t> mergeable;  // normal, user-defined, unused
  std::vector<std::string_view> user_defined;               // longest first
  std::vector<int32_t> byte_id;  // [256] <0xNN>, or unk (sentencepiece; hf::Pipeline has its own)
  int32_t unk = 0, bos = -1, eos = -1;
  bool byte_fallback = false, add_dummy_prefix = false, escape_whitespaces = true;
  bool has_unused = false;
  bool cut_at_newlines = false;  // no piece joins "\n" to another character
  bool cut_at_spaces = false;    // "▁" only starts pieces (or follows another "▁")
  // A tokenizer.json's pipeline (hf_tokenizer.h), which then encodes; null for sentencepiece.
  std::shared_ptr<const hf::Pipeline> hf;
};

}  // namespace btx
