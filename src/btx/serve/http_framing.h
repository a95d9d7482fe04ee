// HTTP/1.1 framing, checked before cpp-httplib reads a request. Debian 12's cpp-httplib (0.11.4)
// reads a body it will refuse (a Content-Length of -5 parses as 2^64-5, and a body over the
// limit is read and discarded), so such requests were answered 413 only after its 5 s read
// timeout; it skips header lines without a colon; and it reads chunked bodies without a limit.
// FramedServer reads each request's head itself, checks it (check_head) and answers a bad one at
// once, without reading its body, in OpenAI's error shape, closing the connection; good requests
// go on to cpp-httplib from the same buffer.
#pragma once

#include <httplib.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace btx::serve {

// What a request's head says of its framing: status 0 when it may be served, else 400
// (malformed), 413 (a body over the limit) or 501 (a transfer coding other than chunked), with
// the message for the client.
struct HeadVerdict {
  int status = 0;
  std::string message;
  bool chunked = false;  // the body comes in chunks (Transfer-Encoding: chunked)
};

// `head` is the request line and the header lines, each ending in CR LF, then the blank line.
// Refused: a request line that is not "METHOD target HTTP/1.x", a line ending in LF alone, a
// header line without a colon or with a space before it, a folded line, a Content-Length that is
// not a decimal number of bytes (or given twice, differently), one above `max_body_bytes` (413),
// Content-Length and Transfer-Encoding together.
HeadVerdict check_head(std::string_view head, size_t max_body_bytes);

// cpp-httplib's server with each request's head read and checked first (check_head). A refused
// request is answered at once with {"error": {...}} and the connection is closed without reading
// its body. A chunked body is read up to the limit: past it the request ends in 413.
class FramedServer : public httplib::Server {
 public:
  FramedServer(size_t max_body_bytes, size_t max_head_bytes)
      : max_body_(max_body_bytes), max_head_(max_head_bytes) {}
  // Headers every refusal carries too (the server's CORS headers).
  void set_refusal_headers(httplib::Headers h) { refusal_headers_ = std::move(h); }

  // On the thread serving a request (its handlers, its error handler): whether its chunked body
  // went past the limit (cpp-httplib then reports a 400, which this makes a 413).
  static bool body_over_limit();

 private:
  bool process_and_close_socket(socket_t sock) override;
  const size_t max_body_, max_head_;
  httplib::Headers refusal_headers_;
};

}  // namespace btx::serve
