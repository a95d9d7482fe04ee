// File helpers that keep good output safe: every write goes to a temporary name in the same
// folder and is renamed into place, so a crash or a bad input never leaves a half-written file
// where a good one was. Also sha256 (OpenSSL) for manifests and checksums.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace btx {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path);
// The JSON document in `path`; invalid JSON, or JSON nested deeper than kMaxJsonDepth, is a
// btx::Error naming the file.
nlohmann::json read_json_file(const fs::path& path);

// The deepest nesting of arrays and objects in JSON text (brackets inside strings skipped), read
// before parsing: the parser and a parsed value's destructor recurse once per level, so text
// nested 100000 deep would overflow the stack. btx's own files nest a few levels.
size_t json_nesting_depth(std::string_view text);
inline constexpr size_t kMaxJsonDepth = 64;
// Writes `data` to `path` atomically (temporary file + fsync + rename).
void write_file_atomic(const fs::path& path, std::string_view data);

// A file written in order under a temporary sibling name and renamed onto `path` by commit()
// (after fsync); removed when destroyed uncommitted (an error on the way), so `path` is never
// left half-written. For output too large to hold in memory (checkpoints).
class AtomicFile {
 public:
  explicit AtomicFile(const fs::path& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* src, uint64_t n);
  void commit();

 private:
  fs::path path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};
// Runs `fill(tmp_dir)` on a fresh temporary folder beside `dir`, then renames it onto `dir`
// (replacing an old `dir` only after the new one is complete). On exception the temporary folder
// is removed and `dir` is untouched.
void write_dir_atomic(const fs::path& dir, const std::function<void(const fs::path&)>& fill);

// Completes a swap that write_dir_atomic() began and a crash cut short: when `dir` is missing
// but the old folder it moved aside (`<dir>.old.tmp-*`) is there, that folder is moved back.
// Returns true when it did so.
bool recover_dir(const fs::path& dir);

// The naming rule of every swap: a file or folder being written or moved aside is named
// `<name>.tmp-<pid>-<n>` or `<name>.old.tmp-<pid>-<n>` (temp_sibling). Such a name is never a
// model, an expert or a result: every listing skips it.
bool is_temp_name(std::string_view filename);
// After a crash: recover_dir(dir), then removes `dir`'s temporary siblings left by processes that
// are gone (pid not alive on this host). A caller that may share `dir` with another host holds
// that folder's lock first. Returns the paths removed.
std::vector<fs::path> tidy_dir(const fs::path& dir);

// Refuses anything but a regular file before it is opened (a FIFO would block the reader for
// ever; a folder or a device is no btx file): a btx::Error naming `path`.
void check_regular_file(const fs::path& path);

// A crash injected for tests: when the environment variable BTX_CRASH_AT is "<point>" or
// "<point>:<k>", the process kills itself with SIGKILL the k-th time (default 1st) it reaches
// `point`. Points: "file.rename" (an atomic file about to be renamed into place), "dir.filled",
// "dir.moved_old" (between the two renames of a folder swap), "dir.swapped" (before the old
// folder is removed). A no-op when the variable is unset.
void fault_point(const char* point);

std::string sha256_hex(std::string_view data);
std::string sha256_file(const fs::path& path);

// A unique temporary sibling name for `path` (pid + counter), e.g. "x.json.tmp-1234-0".
fs::path temp_sibling(const fs::path& path);

}  // namespace btx
