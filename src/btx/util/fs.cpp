#include "btx/util/fs.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "btx/util/error.h"

namespace btx {

void check_regular_file(const fs::path& path) {
  struct stat st {};
  BTX_CHECK(::stat(path.c_str(), &st) == 0, "cannot open {}: {}", path.string(),
            std::strerror(errno));
  BTX_CHECK(S_ISREG(st.st_mode), "cannot read {}: not a regular file ({})", path.string(),
            S_ISDIR(st.st_mode)    ? "a folder"
            : S_ISFIFO(st.st_mode) ? "a FIFO"
                                   : "a device or socket");
}

void fault_point(const char* point) {
  static const char* spec = std::getenv("BTX_CRASH_AT");
  if (spec == nullptr || *spec == '\0') return;
  static std::mutex mu;
  static std::map<std::string, int> hits;
  const std::string s(spec);
  const size_t colon = s.find(':');
  if (s.substr(0, colon) != point) return;
  const int k = colon == std::string::npos ? 1 : std::atoi(s.c_str() + colon + 1);
  std::lock_guard<std::mutex> lock(mu);
  if (++hits[point] == k) ::raise(SIGKILL);
}

std::string read_file(const fs::path& path) {
  check_regular_file(path);
  std::ifstream in(path, std::ios::binary);
  BTX_CHECK(in, "cannot open {}: {}", path.string(), std::strerror(errno));
  std::string data;
  in.seekg(0, std::ios::end);
  data.resize(static_cast<size_t>(in.tellg()));
  in.seekg(0);
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  BTX_CHECK(in, "cannot read {}", path.string());
  return data;
}

fs::path temp_sibling(const fs::path& path) {
  static std::atomic<int> counter{0};
  return path.parent_path() /
         fmt::format("{}.tmp-{}-{}", path.filename().string(), ::getpid(), counter++);
}

size_t json_nesting_depth(std::string_view text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

nlohmann::json read_json_file(const fs::path& path) {
  const std::string text = read_file(path);
  const size_t depth = json_nesting_depth(text);
  BTX_CHECK(depth <= kMaxJsonDepth, "{}: JSON nested {} levels deep; at most {} are read",
            path.string(), depth, kMaxJsonDepth);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e999
    fail("{}: invalid JSON ({})", path.string(), e.what());
  }
}

AtomicFile::AtomicFile(const fs::path& path) : path_(path), tmp_(temp_sibling(path)) {
  BTX_CHECK(!fs::is_directory(path), "cannot write {}: it is a folder (a file name is expected)",
            path.string());
  if (!path.parent_path().empty()) fs::create_directories(path.parent_path());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  BTX_CHECK(fd_ >= 0, "cannot create {}: {}", tmp_.string(), std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) {
    std::error_code ec;
    fs::remove(tmp_, ec);
  }
}

void AtomicFile::write(const void* src, uint64_t n) {
  const auto* p = static_cast<const char*>(src);
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1u << 30));
    const ssize_t put = ::write(fd_, p, chunk);
    if (put < 0 && errno == EINTR) continue;
    BTX_CHECK(put > 0, "cannot write {}: {}", tmp_.string(), std::strerror(errno));
    p += put;
    n -= static_cast<uint64_t>(put);
  }
}

void AtomicFile::commit() {
  BTX_CHECK(::fsync(fd_) == 0, "cannot write {}: fsync: {}", tmp_.string(), std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  BTX_CHECK(::close(fd) == 0, "cannot write {}: close: {}", tmp_.string(), std::strerror(errno));
  fault_point("file.rename");
  std::error_code ec;
  fs::rename(tmp_, path_, ec);
  BTX_CHECK(!ec, "cannot write {}: {}", path_.string(), ec.message());
  committed_ = true;
}

void write_file_atomic(const fs::path& path, std::string_view data) {
  AtomicFile out(path);
  out.write(data.data(), data.size());
  out.commit();
}

namespace {
// The pid of a temporary sibling name of `base` ("<base>.tmp-<pid>-<n>", or
// "<base>.<what>.tmp-<pid>-<n>" such as "<base>.old.tmp-..."), or -1 when `name` is not one.
long temp_owner(const std::string& name, const std::string& base) {
  if (name.rfind(base + ".", 0) != 0) return -1;
  const size_t at = name.find(".tmp-", base.size());
  if (at == std::string::npos) return -1;
  const std::string what = name.substr(base.size(), at - base.size());  // "" or ".old"
  if (what.find('.', 1) != std::string::npos) return -1;  // another name's: "<base>.x.y.tmp-"
  const std::string rest = name.substr(at + 5);
  const size_t dash = rest.find('-');
  if (dash == 0 || dash == std::string::npos) return -1;
  char* end = nullptr;
  const long pid = std::strtol(rest.c_str(), &end, 10);
  return end == rest.c_str() + dash && pid > 0 ? pid : -1;
}

// True when `pid` is another process on this host that is still running (its swap may be in
// progress: its temporaries are not to be touched).
bool alive_other(long pid) {
  return pid > 0 && pid != ::getpid() &&
         (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH);
}
}  // namespace

bool recover_dir(const fs::path& dir) {
  if (fs::exists(dir) || dir.parent_path().empty() || !fs::is_directory(dir.parent_path())) {
    return false;
  }
  const std::string prefix = dir.filename().string() + ".old.tmp-";
  fs::path newest;
  for (const auto& e : fs::directory_iterator(dir.parent_path())) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind(prefix, 0) == 0 &&
        !alive_other(temp_owner(name, dir.filename().string())) &&
        (newest.empty() || fs::last_write_time(e.path()) > fs::last_write_time(newest))) {
      newest = e.path();
    }
  }
  if (newest.empty()) return false;
  fs::rename(newest, dir);
  return true;
}

void write_dir_atomic(const fs::path& dir, const std::function<void(const fs::path&)>& fill) {
  if (!dir.parent_path().empty()) fs::create_directories(dir.parent_path());
  recover_dir(dir);  // a swap cut short by a crash: the old folder is still the good one
  const fs::path tmp = temp_sibling(dir);
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    fill(tmp);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  fault_point("dir.filled");
  // rename() cannot replace a non-empty folder: move the old one aside first, then drop it.
  if (fs::exists(dir)) {
    const fs::path old = temp_sibling(dir.string() + ".old");
    fs::rename(dir, old);
    fault_point("dir.moved_old");
    fs::rename(tmp, dir);
    fault_point("dir.swapped");
    fs::remove_all(old);
  } else {
    fs::rename(tmp, dir);
  }
}

bool is_temp_name(std::string_view filename) {
  return filename.find(".tmp-") != std::string_view::npos;
}

std::vector<fs::path> tidy_dir(const fs::path& dir) {
  std::vector<fs::path> removed;
  if (dir.parent_path().empty() || !fs::is_directory(dir.parent_path())) return removed;
  recover_dir(dir);
  const std::string base = dir.filename().string();
  for (const auto& e : fs::directory_iterator(dir.parent_path())) {
    const long pid = temp_owner(e.path().filename().string(), base);
    if (pid <= 0 || pid == ::getpid() || alive_other(pid)) continue;
    std::error_code ec;
    fs::remove_all(e.path(), ec);
    if (!ec) removed.push_back(e.path());
  }
  std::sort(removed.begin(), removed.end());
  return removed;
}

namespace {
std::string to_hex(const unsigned char* p, unsigned n) {
  static const char* kHex = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (unsigned i = 0; i < n; ++i) {
    out[2 * i] = kHex[p[i] >> 4];
    out[2 * i + 1] = kHex[p[i] & 15];
  }
  return out;
}

struct Sha256 {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(), &EVP_MD_CTX_free};
  Sha256() { EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr); }
  void update(const void* p, size_t n) { EVP_DigestUpdate(ctx.get(), p, n); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(ctx.get(), md, &n);
    return to_hex(md, n);
  }
};
}  // namespace

std::string sha256_hex(std::string_view data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.hex();
}

std::string sha256_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  BTX_CHECK(in, "cannot open {}: {}", path.string(), std::strerror(errno));
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  return h.hex();
}

}  // namespace btx
