#include "btx/serve/http_framing.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <regex>
#include <vector>

#include "btx/serve/completions.h"
#include "btx/serve/connections.h"

namespace btx::serve {

namespace {

// A line of the head as a message shows it: at most 60 bytes, control bytes as \xNN.
std::string shown_line(std::string_view line) {
  std::string out;
  for (const char ch : line.substr(0, 60)) {
    const auto c = static_cast<unsigned char>(ch);
    out += c < 0x20 || c == 0x7F ? fmt::format("\\x{:02X}", c) : std::string(1, ch);
  }
  return line.size() > 60 ? out + "..." : out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A header name: RFC 9110's token characters.
bool is_token(std::string_view s) {
  static const std::string_view extra = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || extra.find(c) != std::string_view::npos;
  });
}

const char* reason(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 413:
      return "Payload Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    default:
      return "Error";
  }
}

HeadVerdict refused(int status, std::string message) {
  return {status, std::move(message), false};
}

// Waits up to `ms` for `events` on `fd`; true when they came.
bool wait_for(int fd, short events, int64_t ms) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
    if (r < 0 && errno == EINTR) continue;
    return r > 0;
  }
}

// A connection's bytes: the head read ahead by the framing check stays in a buffer that
// cpp-httplib's reads take first (and so do pipelined requests), then the socket.
class BufferedSocket : public httplib::Stream {
 public:
  BufferedSocket(int sock, int64_t read_ms, int64_t write_ms)
      : sock_(sock), read_ms_(read_ms), write_ms_(write_ms) {}

  bool is_readable() const override {
    return off_ < buf_.size() || wait_for(sock_, POLLIN, read_ms_);
  }
  bool is_writable() const override { return wait_for(sock_, POLLOUT, write_ms_); }
  ssize_t read(char* ptr, size_t size) override {
    if (over_limit_) return -1;
    if (off_ < buf_.size()) {
      const size_t n = std::min(size, buf_.size() - off_);
      std::copy_n(buf_.data() + off_, n, ptr);
      off_ += n;
      if (off_ == buf_.size()) buf_.clear(), off_ = 0;
      return count(static_cast<ssize_t>(n));
    }
    if (!is_readable()) return -1;
    return count(::recv(sock_, ptr, size, 0));
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    return ::send(sock_, ptr, size, MSG_NOSIGNAL);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage a{};
    socklen_t len = sizeof(a);
    if (::getpeername(sock_, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      numeric_address(a, len, ip, port);
    }
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage a{};
    socklen_t len = sizeof(a);
    if (::getsockname(sock_, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      numeric_address(a, len, ip, port);
    }
  }
  socket_t socket() const override { return sock_; }

  bool has_buffered() const { return off_ < buf_.size(); }

  // Reads until the buffer holds a whole head (the request line and headers up to the blank
  // line; blank lines before it are dropped): its length, 0 when the peer closed or went quiet
  // for the read timeout first, npos when `limit` bytes hold no end.
  size_t read_head(size_t limit) {
    for (;;) {
      while (off_ + 1 < buf_.size() && buf_[off_] == '\r' && buf_[off_ + 1] == '\n') off_ += 2;
      const std::string_view pending(buf_.data() + off_, buf_.size() - off_);
      if (const auto end = pending.find("\r\n\r\n"); end != std::string_view::npos) {
        return end + 4;
      }
      if (const auto end = pending.find("\n\n"); end != std::string_view::npos) {
        return end + 2;  // LF line ends: check_head refuses them at once
      }
      if (pending.size() >= limit) return std::string::npos;
      if (!wait_for(sock_, POLLIN, read_ms_)) return 0;
      char chunk[16384];
      const ssize_t n = ::recv(sock_, chunk, sizeof(chunk), 0);
      if (n <= 0) return 0;
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }
  std::string_view pending() const { return {buf_.data() + off_, buf_.size() - off_}; }

  // The next request begins: its head is `head` bytes; a chunked body may bring `body_limit`
  // bytes of framing and data at most (0: no limit here, cpp-httplib checks Content-Length).
  void begin_request(size_t head, size_t body_limit) {
    head_left_ = head;
    body_read_ = 0;
    body_limit_ = body_limit;
    over_limit_ = false;
  }
  bool over_limit() const { return over_limit_; }

 private:
  ssize_t count(ssize_t n) {
    if (n <= 0) return n;
    size_t body = static_cast<size_t>(n);
    const size_t of_head = std::min(head_left_, body);
    head_left_ -= of_head;
    body -= of_head;
    body_read_ += body;
    if (body_limit_ > 0 && body_read_ > body_limit_) {
      over_limit_ = true;
      return -1;
    }
    return n;
  }

  const int sock_;
  const int64_t read_ms_, write_ms_;
  std::string buf_;
  size_t off_ = 0;
  size_t head_left_ = 0, body_read_ = 0, body_limit_ = 0;
  bool over_limit_ = false;
};

thread_local const BufferedSocket* serving = nullptr;

}  // namespace

HeadVerdict check_head(std::string_view head, size_t max_body_bytes) {
  // Lines, each ending in CR LF; the last one is the blank line.
  std::vector<std::string_view> lines;
  size_t at = 0;
  while (at < head.size()) {
    const size_t nl = head.find('\n', at);
    if (nl == std::string_view::npos) break;
    if (nl == at || head[nl - 1] != '\r') {
      return refused(400, fmt::format("line {} of the request's head ends in LF without CR: "
                                      "HTTP/1.1 lines end in CR LF",
                                      lines.size() + 1));
    }
    lines.push_back(head.substr(at, nl - 1 - at));
    at = nl + 1;
  }
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) return refused(400, "the request has no request line");
  static const std::regex request_line(R"([A-Z]+ [!-~]+ HTTP/1\.[01])");
  if (!std::regex_match(lines[0].begin(), lines[0].end(), request_line)) {
    return refused(400, fmt::format("the request line '{}' is not 'METHOD /path HTTP/1.1'",
                                    shown_line(lines[0])));
  }
  HeadVerdict v;
  std::string length;  // Content-Length's value, as sent
  bool has_length = false, has_coding = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    if (line.front() == ' ' || line.front() == '\t') {
      return refused(400, fmt::format("header line {} ('{}') continues the line before it "
                                      "(obsolete line folding): send each header on one line",
                                      i, shown_line(line)));
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return refused(400, fmt::format("header line {} ('{}') has no colon: a header is "
                                      "'Name: value'",
                                      i, shown_line(line)));
    }
    const std::string_view name = line.substr(0, colon);
    if (!is_token(name)) {
      return refused(400, fmt::format("header line {} ('{}'): '{}' is not a header name (no "
                                      "spaces or separators before the colon)",
                                      i, shown_line(line), shown_line(name)));
    }
    const std::string key = lower(name);
    const std::string_view value = trim(line.substr(colon + 1));
    if (key == "content-length") {
      if (value.empty() ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return refused(400, fmt::format("Content-Length '{}' is not a number of bytes (a "
                                        "decimal number, 0 or more)",
                                        shown_line(value)));
      }
      if (has_length && value != length) {
        return refused(400, fmt::format("Content-Length is given twice, as '{}' and '{}'", length,
                                        shown_line(value)));
      }
      has_length = true;
      length = std::string(value);
    } else if (key == "transfer-encoding") {
      if (lower(value) != "chunked") {
        return refused(501, fmt::format("Transfer-Encoding '{}' is not supported (chunked only)",
                                        shown_line(value)));
      }
      has_coding = true;
    }
  }
  if (has_length && has_coding) {
    return refused(400, "the request has both Content-Length and Transfer-Encoding: send one");
  }
  if (has_length) {
    // Compared as text past 19 digits, so that no number wraps.
    const std::string digits =
        length.substr(std::min(length.find_first_not_of('0'), length.size()));
    if (digits.size() > 19 || std::stoull("0" + digits) > max_body_bytes) {
      return refused(413, fmt::format("the request body is {} bytes, larger than this server's "
                                      "limit of {} bytes",
                                      digits.empty() ? "0" : digits, max_body_bytes));
    }
  }
  v.chunked = has_coding;
  return v;
}

bool FramedServer::body_over_limit() {
  return serving != nullptr && serving->over_limit();
}

bool FramedServer::process_and_close_socket(socket_t sock) {
  BufferedSocket strm(sock, read_timeout_sec_ * 1000 + read_timeout_usec_ / 1000,
                      write_timeout_sec_ * 1000 + write_timeout_usec_ / 1000);
  serving = &strm;
  bool ret = false;
  for (size_t count = keep_alive_max_count_; count > 0 && svr_sock_ != INVALID_SOCKET; --count) {
    if (!strm.has_buffered() && !wait_for(sock, POLLIN, keep_alive_timeout_sec_ * 1000)) break;
    const size_t head = strm.read_head(max_head_);
    if (head == 0) break;  // closed, or quiet for the read timeout before a whole head
    const HeadVerdict v =
        head == std::string::npos
            ? refused(431, fmt::format("the request's head (request line and headers) is longer "
                                       "than {} bytes",
                                       max_head_))
            : check_head(strm.pending().substr(0, head), max_body_);
    if (v.status != 0) {
      // Answered at once, the body unread; the connection closes after it.
      const std::string body = dump_json(error_body(v.message, "invalid_request_error"));
      std::string out = fmt::format("HTTP/1.1 {} {}\r\n", v.status, reason(v.status));
      for (const auto& [k, val] : refusal_headers_) out += k + ": " + val + "\r\n";
      out += fmt::format(
          "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
          body.size(), body);
      strm.write(out.data(), out.size());
      ::shutdown(sock, SHUT_WR);
      // A lingering close: what the client still sends of its body is dropped until it closes
      // (for 1 s at most), so that the close does not reset the connection before the client has
      // read the answer.
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      char sink[16384];
      for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              until - std::chrono::steady_clock::now())
                              .count();
        if (left <= 0 || !wait_for(sock, POLLIN, left)) break;
        if (::recv(sock, sink, sizeof(sink), 0) <= 0) break;
      }
      ret = true;
      break;
    }
    // A chunked body's bytes, framing included, may exceed the limit by its chunk headers only.
    strm.begin_request(head, v.chunked ? max_body_ + max_body_ / 8 + 4096 : 0);
    bool closed = false;
    ret = process_request(strm, count == 1, closed, nullptr);
    if (!ret || closed) break;
  }
  serving = nullptr;
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ret;
}

}  // namespace btx::serve
