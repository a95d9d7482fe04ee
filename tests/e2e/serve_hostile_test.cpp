// `btx serve` against clients that leave mid-stream and requests with broken framing, over raw
// sockets (serve_util.h).
#include "e2e/serve_util.h"

namespace btx::testing {
namespace {

void send_all(int fd, const std::string& s) {
  for (size_t at = 0; at < s.size();) {
    const ssize_t n = ::send(fd, s.data() + at, s.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server closed: what it answered is still to be read
    at += static_cast<size_t>(n);
  }
}

// Everything the server sends until it closes (or the deadline).
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;) out.append(buf, n);
  return out;
}

int status_of(const std::string& answer) {
  return answer.rfind("HTTP/1.1 ", 0) == 0 ? std::atoi(answer.c_str() + 9) : 0;
}

std::string completion_request(const std::string& body, const std::string& extra = "") {
  return "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// A streaming request whose client leaves as soon as it has the status line (a chat UI's
// "stop"): the status.
int stream_and_leave(int port) {
  const int fd = connect_to(port);
  if (fd < 0) return -1;
  send_all(fd,
           completion_request(R"({"prompt": "def f_1(x):", "max_tokens": 100, "stream": true})"));
  std::string head;
  char c;
  while (head.find("\r\n") == std::string::npos && ::recv(fd, &c, 1, 0) == 1) head += c;
  ::close(fd);
  return status_of(head);
}

// Found by a hostile client: 200 streams closed right after their status line got 130 x 503,
// the queue full of requests whose clients had gone. Admission now counts live requests only;
// a flood of live ones still gets 503 with Retry-After.
TEST_F(ServeTest, ClientsThatLeaveMidStreamDoNotStarveTheQueue) {
  const RunDir run = fresh_run("churn");
  // One request at a time, 4 waiting, 20 ms a token: a departed request holds its slot for 100
  // ms before the stream notices, so before the change these got 503 within a few requests.
  ServerProcess server(run.root, {"--run", run.root.string(), "--model", "seed", "--batch", "1",
                                  "--queue", "4", "--token-delay-ms", "20"});
  ASSERT_GT(server.port(), 0);
  std::map<int, int> one_client;
  for (int i = 0; i < 60; ++i) ++one_client[stream_and_leave(server.port())];
  EXPECT_EQ(one_client[200], 60) << one_client[503] << " x 503";
  // Four clients at once, each leaving every stream (at most four live requests at a time).
  std::atomic<int> ok{0}, busy{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 15; ++i) {
        const int s = stream_and_leave(server.port());
        (s == 200 ? ok : busy)++;
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(ok, 60);
  EXPECT_EQ(busy, 0);
  const auto stats = server.health_when(
      [](const nlohmann::json& s) { return s.at("running") == 0 && s.at("queued") == 0; }, 100,
      100);
  EXPECT_EQ(stats.at("rejected"), 0) << stats.dump();
  EXPECT_EQ(stats.at("queued"), 0) << stats.dump();
  EXPECT_EQ(stats.at("cancelled").get<int>() + stats.at("completed").get<int>(), 120)
      << stats.dump();

  // Twelve live clients at once, each reading its whole answer (20 tokens, 0.4 s): four wait (one
  // more runs when the engine takes it before the rest arrive), the rest get 503 at once with
  // Retry-After and OpenAI's error shape.
  std::vector<std::string> answers(12);
  std::vector<std::thread> live;
  for (size_t t = 0; t < answers.size(); ++t) {
    live.emplace_back([&, t] {
      const int fd = connect_to(server.port());
      send_all(fd, completion_request(R"({"prompt": "the", "max_tokens": 20, "temperature": 0,
                                          "stream": true})",
                                      "Connection: close\r\n"));
      answers[t] = read_all(fd);
      ::close(fd);
    });
  }
  for (auto& t : live) t.join();
  int served = 0, refused = 0;
  for (const auto& a : answers) {
    if (status_of(a) == 200) {
      ++served;
      EXPECT_NE(a.find("data: [DONE]"), std::string::npos) << a;
    } else {
      ++refused;
      EXPECT_EQ(status_of(a), 503) << a;
      EXPECT_NE(a.find("Retry-After: 1"), std::string::npos) << a;
      EXPECT_NE(a.find(R"("type":"server_busy")"), std::string::npos) << a;
    }
  }
  EXPECT_GE(served, 4);  // the queue's four at least (a fifth runs if the engine took one first)
  EXPECT_GE(refused, 1);
  EXPECT_TRUE(server.running());
}

// Broken framing was answered after cpp-httplib's 5 s read timeout (a Content-Length of -5 as
// 413 "larger than the limit"), a header line without a colon was accepted, and the errors were a
// bare "HTTP 400". Now each is answered at once, before any body is read, in OpenAI's shape; a
// receive deadline of 4 s (under that read timeout) tells the two apart.
TEST_F(ServeTest, MalformedFramingIsRefusedAtOnceInOpenAisShape) {
  const RunDir run = fresh_run("framing");
  ServerProcess server(run.root, {"--run", run.root.string(), "--model", "seed"});
  ASSERT_GT(server.port(), 0);
  auto answer = [&](const std::string& request) {
    const int fd = connect_to(server.port(), /*deadline_s=*/4);
    send_all(fd, request);
    std::string a = read_all(fd);  // no body is sent, and the connection is not closed by us
    ::close(fd);
    return a;
  };
  const std::string post = "POST /v1/completions HTTP/1.1\r\nHost: x\r\n";
  const std::vector<std::tuple<std::string, int, std::string>> cases = {
      {post + "Content-Length: -5\r\n\r\n", 400,
       "Content-Length '-5' is not a number of bytes (a decimal number, 0 or more)"},
      {post + "Content-Length: 1000000000000\r\nConnection: close\r\n\r\n", 413,
       "the request body is 1000000000000 bytes, larger than this server's limit of 1048576 "
       "bytes"},
      {"GET /health HTTP/1.1\r\nHost x\r\n\r\n", 400,
       "header line 1 ('Host x') has no colon: a header is 'Name: value'"},
      {"GET /health\r\n\r\n", 400, "the request line 'GET /health' is not 'METHOD /path HTTP/1.1'"},
  };
  for (const auto& [request, status, message] : cases) {
    const std::string a = answer(request);
    EXPECT_EQ(status_of(a), status) << request << "\n" << a;
    EXPECT_NE(a.find("Connection: close"), std::string::npos) << a;
    const auto body = nlohmann::json::parse(a.substr(a.find("\r\n\r\n") + 4));
    EXPECT_EQ(body.at("error").at("message"), message) << a;
    EXPECT_EQ(body.at("error").at("type"), "invalid_request_error") << a;
  }
  // A body over the limit that is being sent: 413, which the client reads (the rest of its body is
  // dropped, not answered with a reset).
  std::string a = answer(post + "Content-Length: 2000000\r\n\r\n" + std::string(2000000, 'x'));
  EXPECT_EQ(status_of(a), 413) << a.substr(0, 200);
  // A chunked body is read up to the limit, then 413; a small one is served.
  std::string chunks;
  for (int i = 0; i < 40; ++i) chunks += "10000\r\n" + std::string(0x10000, ' ') + "\r\n";
  a = answer(post + "Transfer-Encoding: chunked\r\n\r\n" + chunks + "0\r\n\r\n");
  EXPECT_EQ(status_of(a), 413) << a.substr(0, 300);
  EXPECT_NE(a.find("larger than this server's limit"), std::string::npos) << a.substr(0, 300);
  const std::string body = R"({"prompt": "the", "max_tokens": 2})";
  a = answer(post + "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n" +
             "Connection: close\r\n\r\n" +
             fmt::format("{:x}\r\n{}\r\n0\r\n\r\n", body.size(), body));
  EXPECT_EQ(status_of(a), 200) << a;
  // Two requests sent at once on one connection (pipelined) are both answered, in order.
  a = answer(completion_request(body) +
             "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(a), 200) << a;
  EXPECT_NE(a.find("\"text_completion\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"queue_limit\""), std::string::npos) << a;
  EXPECT_TRUE(server.running());
}

}  // namespace
}  // namespace btx::testing
