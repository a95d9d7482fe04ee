// Shared test helpers: scratch folders that clean up after themselves.
#pragma once

#include <filesystem>
#include <string>

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

// Writes `text` to `path`, creating parent folders.
void write_text(const std::filesystem::path& path, const std::string& text);

}  // namespace btx::testing
