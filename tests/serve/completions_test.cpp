// The completions protocol apart from HTTP: a request's defaults and every accepted form of its
// fields, refusals with the field named and the right status, and the response and stream
// chunk shapes of OpenAI's API (invalid UTF-8 from byte-level tokens replaced, not a crash).
#include "btx/serve/completions.h"

#include <gtest/gtest.h>

#include "btx/data/tokenizer.h"
#include "test_util.h"
#include "tokenizer_util.h"

namespace btx::serve {
namespace {

class CompletionsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("btx-completions");
    testing::write_text(*dir_ / "corpus/prose.txt",
                        testing::tagged_lines('P', testing::kProseWords, 60'000, 1));
    tok_ = new Tokenizer(Tokenizer::load(
        testing::train_test_tokenizer(*dir_ / "corpus", *dir_ / "tok.model", 300, 30'000)));
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete dir_;
  }
  static CompletionRequest parse(const std::string& body) {
    return parse_completion_request(body, *tok_, model_, limits_, /*default_seed=*/99);
  }
  // The error a body gets: status and message.
  static std::pair<int, std::string> refusal(const std::string& body) {
    try {
      parse(body);
    } catch (const RequestError& e) {
      return {e.status, e.what()};
    }
    return {0, ""};
  }
  static testing::TempDir* dir_;
  static Tokenizer* tok_;
  static inline ServedModel model_{"tiny", 32, 300};
  static inline Limits limits_{};
};
testing::TempDir* CompletionsTest::dir_ = nullptr;
Tokenizer* CompletionsTest::tok_ = nullptr;

TEST_F(CompletionsTest, DefaultsAndAcceptedForms) {
  auto r = parse(R"({"prompt": "the cat"})");
  EXPECT_EQ(r.prompt, tok_->encode("the cat"));
  EXPECT_EQ(r.options.max_tokens, 16);  // OpenAI's defaults
  EXPECT_EQ(r.options.sampling.temperature, 1.0);
  EXPECT_EQ(r.options.sampling.top_p, 1.0);
  EXPECT_EQ(r.options.sampling.top_k, 0);
  EXPECT_EQ(r.options.sampling.seed, 99u);
  EXPECT_TRUE(r.options.stop.empty());
  EXPECT_FALSE(r.stream);
  // A one-string array, token ids, a stop string or list, the other fields.
  EXPECT_EQ(parse(R"({"prompt": ["the cat"]})").prompt, tok_->encode("the cat"));
  EXPECT_EQ(parse(R"({"prompt": [5, 0, 299]})").prompt, (std::vector<int32_t>{5, 0, 299}));
  EXPECT_EQ(parse(R"({"prompt": "x", "stop": "\n"})").options.stop, std::vector<std::string>{"\n"});
  r = parse(R"({"prompt": "x", "model": "tiny", "max_tokens": 7, "temperature": 0,
                "top_p": 0.5, "top_k": 3, "seed": -1, "stop": ["a", "bc"], "stream": true,
                "stream_options": {"include_usage": true}, "n": 1, "echo": false,
                "logprobs": null, "presence_penalty": 0, "user": "me", "logit_bias": {}})");
  EXPECT_EQ(r.options.max_tokens, 7);
  EXPECT_EQ(r.options.sampling.temperature, 0.0);
  EXPECT_EQ(r.options.sampling.top_p, 0.5);
  EXPECT_EQ(r.options.sampling.top_k, 3);
  EXPECT_EQ(r.options.sampling.seed, ~uint64_t{0});  // -1 as unsigned
  EXPECT_EQ(r.options.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST_F(CompletionsTest, RefusalsNameTheField) {
  const std::vector<std::tuple<std::string, int, std::string>> cases = {
      {"", 400, "not valid JSON"},
      {"null", 400, "must be a JSON object"},
      {R"({})", 400, "prompt is required"},
      {R"({"prompt": ""})", 400, "prompt is empty"},
      {R"({"prompt": ["a", "b"]})", 400, "one prompt per request"},
      {R"({"prompt": {"text": "a"}})", 400, "prompt must be a string"},
      {R"({"prompt": [300]})", 400, "token id 300 is outside the vocabulary [0, 300)"},
      {R"({"prompt": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]})", 400,
       "the prompt has 32 tokens but the model's context is 32"},
      {R"({"prompt": "x", "model": "other"})", 404, "this server serves 'tiny'"},
      {R"({"prompt": "x", "max_tokens": 513})", 400, "above this server's limit of 512"},
      {R"({"prompt": "x", "max_tokens": 2.5})", 400, "max_tokens must be an integer"},
      {R"({"prompt": "x", "max_tokens": 18446744073709551615})", 400, "at most"},
      {R"({"prompt": "x", "temperature": -0.1})", 400, "temperature must be >= 0"},
      {R"({"prompt": "x", "top_p": 1.5})", 400, "top_p must be in (0, 1]"},
      {R"({"prompt": "x", "top_k": -2})", 400, "top_k must be at least 0"},
      {R"({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", 400, "at most 4"},
      {R"({"prompt": "x", "stop": [""]})", 400, "non-empty string"},
      {R"({"prompt": "x", "stop": 3})", 400, "stop must be a string or an array"},
      {R"({"prompt": "x", "stream": "yes"})", 400, "stream must be true or false"},
      {R"({"prompt": "x", "stream_options": {"usage": true}})", 400,
       "unknown field 'stream_options.usage'"},
      {R"({"prompt": "x", "n": 3})", 400, "n = 3 is not supported"},
      {R"({"prompt": "x", "echo": true})", 400, "echo = true is not supported"},
      {R"({"prompt": "x", "frequency_penalty": 0.5})", 400, "frequency_penalty = 0.5"},
      {R"({"prompt": "x", "temprature": 0})", 400, "unknown field 'temprature'"},
  };
  for (const auto& [body, status, message] : cases) {
    const auto [got, text] = refusal(body);
    EXPECT_EQ(got, status) << body << ": " << text;
    EXPECT_NE(text.find(message), std::string::npos) << body << ": " << text;
  }
}

TEST_F(CompletionsTest, ResponsesFollowOpenAIsShape) {
  const CompletionIds ids{"cmpl-1", 1700000000, "tiny"};
  GenerateResult r;
  r.text = "ok\xC3";  // half a character: replaced, not a crash
  r.tokens = {4, 5};
  r.finish_reason = "eos";
  const auto j = completion_response(ids, r, 3, {{"posterior", {{"a", 1.0}}}});
  EXPECT_EQ(j.at("object"), "text_completion");
  EXPECT_EQ(j.at("choices").at(0).at("finish_reason"), "stop");  // eos is OpenAI's "stop"
  EXPECT_EQ(
      j.at("usage"),
      nlohmann::json::parse(R"({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})"));
  EXPECT_EQ(j.at("btx").at("posterior").at("a"), 1.0);
  const std::string text = dump_json(j);
  EXPECT_NE(text.find("ok\xEF\xBF\xBD"), std::string::npos) << text;  // U+FFFD
  const auto chunk = completion_chunk(ids, "hi", nullptr);
  EXPECT_TRUE(chunk.at("choices").at(0).at("finish_reason").is_null());
  EXPECT_EQ(sse_event(chunk).rfind("data: {", 0), 0u);
  EXPECT_EQ(sse_event(chunk).substr(sse_event(chunk).size() - 2), "\n\n");
  EXPECT_EQ(error_body("bad", "invalid_request_error", "top_p"),
            nlohmann::json::parse(R"({"error": {"message": "bad", "type":
                "invalid_request_error", "param": "top_p", "code": null}})"));
}

}  // namespace
}  // namespace btx::serve
