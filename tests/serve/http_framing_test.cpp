// The framing check of a request's head (http_framing.h), on hand-written heads.
#include "btx/serve/http_framing.h"

#include <gtest/gtest.h>

namespace btx::serve {
namespace {

HeadVerdict check(const std::string& headers, size_t limit = 1000) {
  return check_head("POST /v1/completions HTTP/1.1\r\n" + headers + "\r\n", limit);
}

TEST(HttpFramingTest, GoodHeadsPass) {
  EXPECT_EQ(check("Host: x\r\nContent-Length: 12\r\n").status, 0);
  EXPECT_EQ(check("Host: x\r\nContent-Length:1000\r\n").status, 0);  // at the limit
  EXPECT_EQ(check("Host: x\r\nContent-Length: 0012\r\nContent-Length: 0012\r\n").status, 0);
  EXPECT_EQ(check("X-Empty:\r\nAuthorization: Bearer a:b\r\n").status, 0);
  const auto chunked = check("Transfer-Encoding: Chunked\r\n");
  EXPECT_EQ(chunked.status, 0);
  EXPECT_TRUE(chunked.chunked);
  EXPECT_EQ(check_head("GET /health HTTP/1.0\r\n\r\n", 0).status, 0);
}

TEST(HttpFramingTest, MalformedHeadsAre400WithTheLineAndTheNumberAsSent) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"Content-Length: -5\r\n", "Content-Length '-5' is not a number of bytes"},
      {"Content-Length: ten\r\n", "Content-Length 'ten' is not a number of bytes"},
      {"Content-Length: 1e3\r\n", "Content-Length '1e3' is not a number of bytes"},
      {"Content-Length: \r\n", "Content-Length '' is not a number of bytes"},
      {"Content-Length: 5\r\nContent-Length: 6\r\n", "Content-Length is given twice, as '5' and"},
      {"Host x\r\n", "header line 1 ('Host x') has no colon"},
      {"Host: x\r\nBad Name: y\r\n", "header line 2 ('Bad Name: y'): 'Bad Name' is not a header"},
      {"Host: x\r\n  folded\r\n", "header line 2 ('  folded') continues the line before it"},
      {"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
       "both Content-Length and Transfer-Encoding"},
  };
  for (const auto& [headers, message] : cases) {
    const auto v = check(headers);
    EXPECT_EQ(v.status, 400) << headers;
    EXPECT_NE(v.message.find(message), std::string::npos) << headers << ": " << v.message;
  }
  EXPECT_EQ(check("Transfer-Encoding: gzip\r\n").status, 501);
  auto v = check_head("GET /health\r\n\r\n", 0);
  EXPECT_EQ(v.status, 400);
  EXPECT_EQ(v.message, "the request line 'GET /health' is not 'METHOD /path HTTP/1.1'");
  v = check_head("GET /health HTTP/1.1\nHost: x\n\n", 0);
  EXPECT_EQ(v.status, 400);
  EXPECT_NE(v.message.find("line 1 of the request's head ends in LF without CR"),
            std::string::npos);
  // Control bytes are shown escaped.
  v = check("Host\x01x\r\n");
  EXPECT_NE(v.message.find("'Host\\x01x'"), std::string::npos) << v.message;
}

TEST(HttpFramingTest, BodiesOverTheLimitAre413AndNoNumberWraps) {
  auto v = check("Content-Length: 1001\r\n");
  EXPECT_EQ(v.status, 413);
  EXPECT_EQ(v.message,
            "the request body is 1001 bytes, larger than this server's limit of 1000 "
            "bytes");
  // Past 2^64: compared as text, shown as sent.
  v = check("Content-Length: 000123456789012345678901234567890\r\n");
  EXPECT_EQ(v.status, 413);
  EXPECT_NE(v.message.find("is 123456789012345678901234567890 bytes"), std::string::npos)
      << v.message;
  EXPECT_EQ(check("Content-Length: 18446744073709551616\r\n").status, 413);  // 2^64
}

}  // namespace
}  // namespace btx::serve
