#include "test_util.h"

#include <fmt/format.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <stdexcept>

#include "btx/util/error.h"

namespace btx::testing {

TempDir::TempDir(const std::string& tag) {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          (tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const btx::Error& e) {
    return e.what();
  }
  return "";
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  if (!path.parent_path().empty()) std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write " + path.string());
  out << text;
}

const std::vector<std::string> kProseWords = {"the",  "lord", "said",  "unto", "him",   "and",
                                              "they", "went", "forth", "into", "israel"};
const std::vector<std::string> kCodeWords = {"def", "return", "self,", "import",   "for",
                                             "in",  "if",     "None:", "print(x)", "\t"};
const std::vector<std::string> kDictWords = {"noun",  "verb",   "adj.", "a",    "kind",  "of",
                                             "small", "plant;", "see",  "also", "(1913)"};

std::string tagged_lines(char tag, const std::vector<std::string>& words, size_t bytes,
                         uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out;
  for (int line = 0; out.size() < bytes; ++line) {
    out += fmt::format("{}#{:06d}#", tag, line);
    const int n = 5 + static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) out += " " + words[rng() % words.size()];
    out += '\n';
  }
  return out;
}

}  // namespace btx::testing
