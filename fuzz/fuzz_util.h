// Shared by the fuzz targets (libFuzzer, built and run by scripts/fuzz.sh): bad input must end
// in btx's own error (btx::Error, or a request error for the server); any other exception, a
// crash, a hang or a sanitizer report is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

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

}  // namespace btx::fuzz
