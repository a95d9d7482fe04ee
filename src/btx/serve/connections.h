// What btx serve knows of its TCP connections beyond what cpp-httplib tells a handler.
// Debian 12's cpp-httplib (0.11.4) gives a handler no way to ask whether its client is still
// there (Request::is_connection_closed came later), and reads request headers with a timeout per
// recv() but no deadline for the whole header, so a client trickling a byte every few seconds
// holds a worker thread for ever. Both are done here from the socket itself: a request's socket
// is found among the process's descriptors by its two addresses (/proc/self/fd), a peer that has
// closed reads as end of file, and a watchdog shuts down connections that have sent no complete
// request for too long. Without /proc the watch reports nothing (a stream still notices a
// departed client when a write fails).
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace btx::serve {

// The two ends of a TCP connection, as cpp-httplib's Request gives them.
struct Endpoint {
  std::string peer_addr;  // numeric, as getnameinfo(NI_NUMERICHOST) writes it
  int peer_port = -1;
  int local_port = -1;
  bool operator<(const Endpoint& o) const;
};

// The numeric address and port of a socket address, as getnameinfo(NI_NUMERICHOST) writes them
// (and cpp-httplib's Request): false when it cannot.
bool numeric_address(const sockaddr_storage& a, socklen_t len, std::string& addr, int& port);

// The descriptor of this process's socket with these ends, or -1 (none, or no /proc).
int find_socket(const Endpoint& e);
// True when descriptor `fd` is a connected socket with ends `e`.
bool socket_has(int fd, const Endpoint& e);

// One request's connection, watched for the client leaving.
class ClientWatch {
 public:
  explicit ClientWatch(Endpoint e);
  // True once the client has closed or reset the connection (or its descriptor now belongs to
  // another connection). False while it is there, and when it cannot be told.
  bool gone() const;
  bool watched() const { return fd_ >= 0; }

 private:
  Endpoint e_;
  int fd_ = -1;
};

// A watchdog over the connections to `local_port`: every connection that is not inside a request
// (began() .. ended()) and has not completed one for `idle` is shut down, which ends cpp-httplib's
// header read at once and frees its thread. So idle and trickling connections cost at most
// `idle` of a thread each, and a health check waits for none of them.
class HeaderDeadline {
 public:
  HeaderDeadline(int local_port, std::chrono::milliseconds idle);
  ~HeaderDeadline();
  HeaderDeadline(const HeaderDeadline&) = delete;
  HeaderDeadline& operator=(const HeaderDeadline&) = delete;

  void began(const Endpoint& e);             // a handler started: its headers were read
  void ended(const Endpoint& e);             // its response is done: idle again from now
  size_t closed() const { return closed_; }  // connections shut down so far

 private:
  using Clock = std::chrono::steady_clock;
  struct Seen {
    Clock::time_point since;  // first seen, or the end of its last request
    int in_request = 0;
  };
  void loop();
  void scan();

  const int port_;
  const std::chrono::milliseconds idle_;
  std::mutex m_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<Endpoint, Seen> seen_;
  std::atomic<size_t> closed_{0};
  std::thread worker_;
};

}  // namespace btx::serve
