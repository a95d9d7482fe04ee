// Shared by the fuzz targets (libFuzzer, built and run by scripts/fuzz.sh): bad input must end
// in btx's own error (btx::Error, or a request error for the server); any other exception, a
// crash, a hang or a sanitizer report is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "btx/data/tokenizer.h"
#include "btx/util/fs.h"

namespace btx::fuzz {

// The input as a file (the readers under test take paths), rewritten for every input.
inline std::filesystem::path as_file(const uint8_t* data, size_t size, const char* name) {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("btx-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  const auto path = dir / name;
  write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(data), size));
  return path;
}

// A tokenizer a reader accepted must encode any text (a bit of code, accents, a combining mark,
// a special token's text, an emoji, an invalid byte) to ids in range and decode them.
inline void check_encodes(const Tokenizer& tok) {
  const std::string text =
      "def f(x):\n    return x  # caf\xc3\xa9 e\xcc\x81 \xe2\x96\x81 <|endoftext|> 123 "
      "\xf0\x9f\x8e\x89 \xff";
  const auto ids = tok.encode(text);
  for (const int32_t id : ids) {
    if (id < 0 || id >= tok.vocab_size()) std::abort();
  }
  tok.decode(ids);
}

}  // namespace btx::fuzz
