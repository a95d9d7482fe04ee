// Shared test helpers: scratch folders that clean up after themselves.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace btx::testing {

// A fresh, empty folder under the system temp dir, removed when the object dies.
struct TempDir {
  explicit TempDir(const std::string& tag = "btx-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// The message of the btx::Error that `f` throws; "" when it throws none.
std::string error_of(const std::function<void()>& f);

// Writes `text` to `path`, creating parent folders.
void write_text(const std::filesystem::path& path, const std::string& text);

// About `bytes` of text in lines "<tag>#NNNNNN# w w w ...", 5 to 16 words drawn from `words`
// each: every line is unique and names its source, so tests can trace where a line went.
std::string tagged_lines(char tag, const std::vector<std::string>& words, size_t bytes,
                         uint64_t seed);
// Three small vocabularies that look like prose, code and a dictionary.
extern const std::vector<std::string> kProseWords, kCodeWords, kDictWords;

}  // namespace btx::testing
