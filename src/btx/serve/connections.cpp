#include "btx/serve/connections.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <tuple>
#include <vector>

namespace btx::serve {

namespace {

// The ends of connected socket `fd` (false for anything else: a file, a listening socket).
bool ends_of(int fd, Endpoint& e) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  std::string local_addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
      !numeric_address(a, len, local_addr, e.local_port)) {
    return false;
  }
  len = sizeof(a);
  return ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0 &&
         numeric_address(a, len, e.peer_addr, e.peer_port);
}

// The open descriptors of this process (empty without /proc).
std::vector<int> open_descriptors() {
  std::vector<int> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    char* stop = nullptr;
    const long fd = std::strtol(name.c_str(), &stop, 10);
    if (stop != name.c_str() && *stop == '\0') out.push_back(static_cast<int>(fd));
  }
  return out;
}

}  // namespace

bool numeric_address(const sockaddr_storage& a, socklen_t len, std::string& addr, int& port) {
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, host, sizeof(host), serv,
                    sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return false;
  }
  addr = host;
  port = std::atoi(serv);
  return true;
}

bool Endpoint::operator<(const Endpoint& o) const {
  return std::tie(peer_addr, peer_port, local_port) <
         std::tie(o.peer_addr, o.peer_port, o.local_port);
}

bool socket_has(int fd, const Endpoint& e) {
  Endpoint got;
  return ends_of(fd, got) && got.peer_port == e.peer_port && got.local_port == e.local_port &&
         got.peer_addr == e.peer_addr;
}

int find_socket(const Endpoint& e) {
  for (const int fd : open_descriptors()) {
    if (socket_has(fd, e)) return fd;
  }
  return -1;
}

ClientWatch::ClientWatch(Endpoint e) : e_(std::move(e)), fd_(find_socket(e_)) {}

bool ClientWatch::gone() const {
  if (fd_ < 0) return false;
  if (!socket_has(fd_, e_)) return true;  // closed, its number perhaps reused
  char c;
  const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return false;  // the client sent more (its next request): still there
  if (n == 0) return true;  // end of file: the client closed its end
  return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;  // reset
}

HeaderDeadline::HeaderDeadline(int local_port, std::chrono::milliseconds idle)
    : port_(local_port), idle_(idle), worker_([this] { loop(); }) {}

HeaderDeadline::~HeaderDeadline() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void HeaderDeadline::began(const Endpoint& e) {
  std::lock_guard<std::mutex> lock(m_);
  auto& s = seen_[e];
  ++s.in_request;
}

void HeaderDeadline::ended(const Endpoint& e) {
  std::lock_guard<std::mutex> lock(m_);
  auto& s = seen_[e];
  s.in_request = std::max(0, s.in_request - 1);
  s.since = Clock::now();
}

void HeaderDeadline::loop() {
  // A tenth of the deadline between scans: a connection is shut down at most 10% late.
  const auto every = std::max(std::chrono::milliseconds(20), idle_ / 10);
  std::unique_lock<std::mutex> lock(m_);
  while (!stop_) {
    lock.unlock();
    scan();
    lock.lock();
    cv_.wait_for(lock, every, [&] { return stop_; });
  }
}

void HeaderDeadline::scan() {
  std::vector<std::pair<int, Endpoint>> open;
  for (const int fd : open_descriptors()) {
    Endpoint e;
    if (ends_of(fd, e) && e.local_port == port_) open.emplace_back(fd, e);
  }
  const auto now = Clock::now();
  std::vector<std::pair<int, Endpoint>> expired;
  {
    std::lock_guard<std::mutex> lock(m_);
    std::set<Endpoint> present;
    for (const auto& [fd, e] : open) {
      present.insert(e);
      auto [it, fresh] = seen_.try_emplace(e);
      if (fresh) it->second.since = now;
      if (it->second.in_request == 0 && now - it->second.since > idle_) expired.emplace_back(fd, e);
    }
    for (auto it = seen_.begin(); it != seen_.end();) {
      // Forgotten once closed, unless a handler still holds it (began() without ended() yet).
      it = present.count(it->first) || it->second.in_request > 0 ? std::next(it) : seen_.erase(it);
    }
  }
  for (const auto& [fd, e] : expired) {
    // The descriptor is checked again: it may have been closed and reused since the scan.
    if (socket_has(fd, e) && ::shutdown(fd, SHUT_RDWR) == 0) {
      ++closed_;
      std::lock_guard<std::mutex> lock(m_);
      seen_[e].since = Clock::now();  // not again until cpp-httplib has closed it
    }
  }
}

}  // namespace btx::serve
