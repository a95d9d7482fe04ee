// What the `btx serve` end-to-end tests share: the suite's fixture (one trained forest), a server
// child process on a free port, curl as the HTTP client, and the data of server-sent events.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <regex>
#include <thread>

#include "btx/data/chat_template.h"
#include "btx/generate/generate.h"
#include "btx/serve/completions.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/subprocess.h"
#include "e2e/e2e_util.h"
#include "e2e/forest_fixture.h"
#include "e2e/node_util.h"

namespace btx::testing {

struct ServeSuite {};
using ServeTest = ForestTest<ServeSuite>;

// Skips (or fails under CI) when curl, the client the tests drive the server with, is missing.
inline bool have_curl() {
  try {
    return run_process({"curl", "--version"}).exit_code == 0;
  } catch (const Error&) {
    return false;
  }
}
#define REQUIRE_CURL()                                                           \
  do {                                                                           \
    if (!have_curl()) {                                                          \
      if (std::getenv("CI")) FAIL() << "curl is missing (apt-get install curl)"; \
      GTEST_SKIP() << "curl is missing; install it with: apt-get install curl";  \
    }                                                                            \
  } while (0)

struct Reply {
  int status = 0;
  std::string body;
  nlohmann::json json() const { return nlohmann::json::parse(body); }
};

// A `btx serve` child on a free port, stopped with SIGTERM when the test ends.
class ServerProcess {
 public:
  ServerProcess(const fs::path& dir, const std::vector<std::string>& args)
      : log_(dir / ("serve-" + std::to_string(next_id()) + ".log")) {
    std::vector<std::string> argv = {BTX_BINARY, "serve", "--port", "0"};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = spawn_to_log(argv, log_);
    const std::regex listening(R"(on http://127\.0\.0\.1:(\d+) )");
    for (int i = 0; i < 600 && port_ == 0; ++i) {
      std::smatch m;
      const std::string text = fs::exists(log_) ? read_file(log_) : "";
      if (std::regex_search(text, m, listening)) {
        port_ = std::stoi(m[1]);
      } else if (auto code = poll_exit(pid_)) {
        pid_ = -1;
        ADD_FAILURE() << "btx serve exited with " << *code << ":\n" << text;
        return;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    EXPECT_GT(port_, 0) << "btx serve did not start:\n" << read_file(log_);
    dir_ = dir;
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      while (!poll_exit(pid_)) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  // SIGTERM, then the exit status (waits up to 30 s).
  int terminate() {
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 300; ++i) {
      if (auto code = poll_exit(pid_)) {
        pid_ = -1;
        return *code;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return -1;
  }
  bool running() {
    if (pid_ > 0 && poll_exit(pid_)) pid_ = -1;
    return pid_ > 0;
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::string log() const { return read_file(log_); }
  static int next_id() {
    static int n = 0;
    return n++;
  }
  int port() const { return port_; }

  // /health's answer once `done` holds of it, asked up to `tries` times `interval_ms` apart (the
  // last answer when it never does).
  nlohmann::json health_when(const std::function<bool(const nlohmann::json&)>& done, int tries,
                             int interval_ms) {
    nlohmann::json stats;
    for (int i = 0; i < tries; ++i) {
      stats = request("/health").json();
      if (done(stats)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
    }
    return stats;
  }

  // curl: GET when `body` is empty, else POST it as JSON. Extra curl arguments go first.
  Reply request(const std::string& path, const std::string& body = "",
                const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {"curl", "-sS", "-N", "-w", "\n%{http_code}"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (!body.empty()) {
      const fs::path file = dir_ / ("body-" + std::to_string(counter_++) + ".json");
      write_file_atomic(file, body);
      argv.insert(argv.end(),
                  {"-H", "Content-Type: application/json", "--data-binary", "@" + file.string()});
    }
    argv.push_back(url(path));
    const auto r = run_process(argv);
    Reply out;
    const auto nl = r.out.rfind('\n');
    if (nl == std::string::npos) return out;
    out.body = r.out.substr(0, nl);
    out.status = std::atoi(r.out.substr(nl + 1).c_str());
    return out;
  }

 private:
  fs::path log_, dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  int counter_ = 0;
};

// A connection to the server on 127.0.0.1:port with a receive deadline, or -1.
inline int connect_to(int port, int deadline_s = 30) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{deadline_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// The data of each event of a server-sent event stream ("data: X" lines; comments skipped).
inline std::vector<std::string> sse_data(const std::string& stream) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < stream.size()) {
    auto end = stream.find("\n\n", at);
    if (end == std::string::npos) end = stream.size();
    const std::string event = stream.substr(at, end - at);
    if (event.rfind("data: ", 0) == 0) out.push_back(event.substr(6));
    at = end + 2;
  }
  return out;
}

}  // namespace btx::testing
