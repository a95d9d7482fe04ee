// `btx serve` driven over loopback by real HTTP clients (curl, and the official OpenAI client):
// completions and chat completions equal in-process generation, whole and streamed as server-sent
// events; logprobs and echo equal btx's own per-token log-probabilities; n and prompt lists;
// CORS; health and models; bad requests get
// JSON errors with the right status; a flood beyond the queue gets 503 while health checks are
// still answered; a streaming client that disconnects stops its generation; SIGTERM stops the
// server cleanly.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <regex>
#include <thread>

#include "btx/data/chat_template.h"
#include "btx/generate/generate.h"
#include "btx/serve/completions.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/subprocess.h"
#include "e2e_util.h"
#include "forest_fixture.h"
#include "node_util.h"

namespace btx::testing {
namespace {

struct ServeSuite {};
using ServeTest = ForestTest<ServeSuite>;

// Skips (or fails under CI) when curl, the client the tests drive the server with, is missing.
bool have_curl() {
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

// The data of each event of a server-sent event stream ("data: X" lines; comments skipped).
std::vector<std::string> sse_data(const std::string& stream) {
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

TEST_F(ServeTest, CompletionsOverLoopbackMatchGenerationAndRefuseBadRequests) {
  REQUIRE_CURL();
  const RunDir run = fresh_run("serve");
  // 10 ms a step, so that concurrent requests overlap in the batch.
  ServerProcess server(run.root,
                       {"--run", run.root.string(), "--model", "seed", "--max-tokens-limit", "40",
                        "--max-body-bytes", "2000", "--token-delay-ms", "10"});
  ASSERT_GT(server.port(), 0);

  auto health = server.request("/health");
  ASSERT_EQ(health.status, 200) << health.body;
  EXPECT_EQ(health.json().at("status"), "ok");
  auto models = server.request("/v1/models");
  ASSERT_EQ(models.status, 200) << models.body;
  EXPECT_EQ(models.json().at("data").at(0).at("id"), "seed");

  // Greedy text equals in-process generation of the same model.
  const Tokenizer tok = Tokenizer::load(run.tokenizer_file());
  CausalLM seed = load_model(run.seed());
  const std::string prompt = "def f_1(x):\n    return";
  GenerateOptions g;
  g.max_tokens = 12;
  const auto expect = generate(seed, tok, tok.encode(prompt), g);
  const nlohmann::json req = {{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}};
  auto r = server.request("/v1/completions", req.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = r.json();
  EXPECT_EQ(j.at("object"), "text_completion");
  EXPECT_EQ(j.at("model"), "seed");
  EXPECT_EQ(j.at("choices").at(0).at("text"), expect.text);
  EXPECT_EQ(j.at("choices").at(0).at("finish_reason"),
            serve::openai_finish_reason(expect.finish_reason));
  EXPECT_EQ(j.at("usage").at("prompt_tokens"), tok.encode(prompt).size());
  EXPECT_EQ(j.at("usage").at("completion_tokens"), expect.tokens.size());

  // Streamed: the chunks add up to the same text, then the finish reason, the usage, [DONE].
  auto sreq = req;
  sreq["stream"] = true;
  sreq["stream_options"] = {{"include_usage", true}};
  r = server.request("/v1/completions", sreq.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const auto events = sse_data(r.body);
  ASSERT_GE(events.size(), 3u) << r.body;
  EXPECT_EQ(events.back(), "[DONE]");
  std::string streamed;
  nlohmann::json finish;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const auto e = nlohmann::json::parse(events[i]);
    if (e.at("choices").empty()) {
      EXPECT_EQ(e.at("usage").at("completion_tokens"), expect.tokens.size());
      continue;
    }
    streamed += e.at("choices").at(0).at("text").get<std::string>();
    if (!e.at("choices").at(0).at("finish_reason").is_null())
      finish = e.at("choices").at(0).at("finish_reason");
  }
  EXPECT_EQ(streamed, expect.text);
  EXPECT_EQ(finish, serve::openai_finish_reason(expect.finish_reason));

  // Concurrent requests of different prompt lengths and budgets, decoded together in one batch
  // (rows joining and leaving): each gets the text it gets alone.
  {
    const std::vector<std::string> prompts = {"def", "import os\nimport sys\n",
                                              "class A:", "for i in range(10):\n    x ="};
    std::string script;
    std::vector<GenerateResult> alone;
    for (size_t i = 0; i < prompts.size(); ++i) {
      GenerateOptions gi;
      gi.max_tokens = 6 + 4 * static_cast<int64_t>(i);
      alone.push_back(generate(seed, tok, tok.encode(prompts[i]), gi));
      const fs::path body = run.root / ("batch-" + std::to_string(i) + ".json");
      write_file_atomic(
          body, nlohmann::json(
                    {{"prompt", prompts[i]}, {"max_tokens", gi.max_tokens}, {"temperature", 0}})
                    .dump());
      script += "curl -s -o " + (run.root / ("out-" + std::to_string(i) + ".json")).string() +
                " -H 'Content-Type: application/json' --data-binary @" + body.string() + " " +
                server.url("/v1/completions") + " & ";
    }
    ASSERT_EQ(run_process({"sh", "-c", script + "wait"}).exit_code, 0);
    for (size_t i = 0; i < prompts.size(); ++i) {
      const auto out =
          nlohmann::json::parse(read_file(run.root / ("out-" + std::to_string(i) + ".json")));
      EXPECT_EQ(out.at("choices").at(0).at("text"), alone[i].text) << prompts[i];
      EXPECT_EQ(out.at("usage").at("completion_tokens"), alone[i].tokens.size()) << prompts[i];
    }
    const auto stats = server.request("/health").json();
    EXPECT_GE(stats.at("peak_running").get<int>(), 2) << stats.dump();  // they did overlap
  }

  // A streaming client that leaves mid-generation: its row leaves the batch, cancelled.
  {
    const auto cut =
        server.request("/v1/completions",
                       R"({"prompt": "def", "max_tokens": 40, "temperature": 0, "stream": true})",
                       {"--max-time", "0.2"});
    EXPECT_EQ(cut.body.find("[DONE]"), std::string::npos) << cut.body;
    nlohmann::json stats;
    for (int i = 0; i < 200; ++i) {
      stats = server.request("/health").json();
      if (stats.at("cancelled") == 1 && stats.at("running") == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(stats.at("cancelled"), 1) << stats.dump();
    EXPECT_EQ(stats.at("running"), 0) << stats.dump();
  }

  // Seeded sampling repeats; a stop string cuts the text.
  nlohmann::json sampled = {
      {"prompt", prompt}, {"max_tokens", 20}, {"temperature", 1.0}, {"top_p", 0.9}, {"seed", 3}};
  const auto a = server.request("/v1/completions", sampled.dump()).json();
  const auto b = server.request("/v1/completions", sampled.dump()).json();
  const std::string text = a.at("choices").at(0).at("text");
  EXPECT_EQ(text, b.at("choices").at(0).at("text").get<std::string>());
  if (text.size() > 4) {
    sampled["stop"] = text.substr(2, 2);
    const auto c = server.request("/v1/completions", sampled.dump()).json();
    EXPECT_EQ(c.at("choices").at(0).at("finish_reason"), "stop");
    EXPECT_EQ(c.at("choices").at(0).at("text"), text.substr(0, text.find(text.substr(2, 2))));
  }

  // Bad requests: status, OpenAI's error shape, a message naming the field.
  std::string long_prompt;
  for (int i = 0; i < 200; ++i) long_prompt += "the quick fox ";  // 2800 bytes
  const std::vector<std::tuple<std::string, int, std::string>> bad = {
      {"{not json", 400, "not valid JSON"},
      {"[1, 2]", 400, "must be a JSON object"},
      {R"({"max_tokens": 3})", 400, "prompt is required"},
      {R"({"prompt": "x", "max_tokens": 41})", 400, "above this server's limit of 40"},
      {R"({"prompt": "x", "max_tokens": -1})", 400, "max_tokens must be at least 0"},
      {R"({"prompt": "x", "temperature": "hot"})", 400, "temperature must be a number"},
      {R"({"prompt": "x", "top_p": 0})", 400, "top_p must be in (0, 1]"},
      {R"({"prompt": "x", "stop": [1]})", 400, "each stop must be a non-empty string"},
      {R"({"prompt": "x", "n": 17})", 400, "n must be at most 16"},
      {R"({"prompt": "x", "logprobs": 21})", 400, "logprobs must be at most 20"},
      {R"({"prompt": "x", "logprobs": 1, "stream": true})", 400, "logprobs with stream"},
      {R"({"prompt": ["x", 3]})", 400, "prompt[1] must be a string or an array of token ids"},
      {R"({"prompt": "x", "max_tokns": 2})", 400, "unknown field 'max_tokns'"},
      {R"({"prompt": "x", "model": "gpt-4"})", 404, "this server serves 'seed'"},
      {R"({"prompt": [5, 99999]})", 400, "outside the vocabulary"},
      {nlohmann::json({{"prompt", long_prompt}}).dump(), 413, "limit of 2000 bytes"},
      {nlohmann::json({{"prompt", long_prompt.substr(0, 1500)}}).dump(), 400,
       "but the model's context is 64"},
  };
  for (const auto& [body, status, message] : bad) {
    const auto e = server.request("/v1/completions", body);
    EXPECT_EQ(e.status, status) << body << " -> " << e.body;
    const auto ej = nlohmann::json::parse(e.body, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(ej.is_object() && ej.contains("error")) << body << " -> " << e.body;
    EXPECT_NE(ej["error"].value("message", "").find(message), std::string::npos)
        << body << " -> " << e.body;
  }
  const auto missing = server.request("/v2/nothing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.body.find("no route for GET /v2/nothing"), std::string::npos) << missing.body;
  // Still healthy after all of it; SIGTERM ends it cleanly.
  EXPECT_EQ(server.request("/health").status, 200);
  EXPECT_EQ(server.terminate(), 0) << server.log();
  EXPECT_NE(server.log().find("btx serve: stopping"), std::string::npos) << server.log();
}

TEST_F(ServeTest, FloodGets503DisconnectCancelsAndTheEnsembleServes) {
  REQUIRE_CURL();
  const RunDir run = fresh_run("flood");
  auto m = run_btx("merge --run " + run.root.string() + " --method ensemble");
  ASSERT_EQ(m.code, 0) << m.output;
  // A slow model (30 ms a token) and a queue of 1: one request runs, one waits, the rest 503.
  ServerProcess server(run.root, {"--run", run.root.string(), "--model", "merged/ensemble",
                                  "--batch", "1", "--queue", "1", "--token-delay-ms", "30"});
  ASSERT_GT(server.port(), 0);
  const std::string body = R"({"prompt": "def f_1(x):", "max_tokens": 20, "temperature": 0})";
  write_file_atomic(run.root / "flood.json", body);
  const std::string post =
      "curl -s -o /dev/null -w 'code=%{http_code}\\n' -H 'Content-Type: "
      "application/json' --data-binary @" +
      (run.root / "flood.json").string() + " " + server.url("/v1/completions");
  // The first request runs before the flood (else all six may find it still queued): then one
  // of the five waits in the queue and four get 503.
  const std::string script =
      post + " & for t in $(seq 100); do curl -s " + server.url("/health") +
      " | grep -q '\"running\":1' && break; sleep 0.05; done; for i in 1 2 3 4 5; do " + post +
      " & done; sleep 0.3; curl -s -w ' health=%{http_code}\\n' " + server.url("/health") +
      "; wait";
  const auto flood = run_process({"sh", "-c", script});
  int ok = 0, busy = 0;
  for (size_t at = flood.out.find("code="); at != std::string::npos;
       at = flood.out.find("code=", at + 1)) {
    const int code = std::atoi(flood.out.c_str() + at + 5);
    ok += code == 200;
    busy += code == 503;
  }
  EXPECT_EQ(ok + busy, 6) << flood.out;
  EXPECT_GE(ok, 2) << flood.out;
  EXPECT_GE(busy, 1) << flood.out;
  // The health check made during the flood was answered, with the model busy (one request at a
  // time: --batch 1).
  EXPECT_NE(flood.out.find("\"batch_limit\":1"), std::string::npos) << flood.out;
  EXPECT_NE(flood.out.find("\"running\":1"), std::string::npos) << flood.out;
  EXPECT_NE(flood.out.find("health=200"), std::string::npos) << flood.out;

  // The ensemble answers with its posterior over the experts, which favours the code expert.
  auto r = server.request("/v1/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  const auto post_w = r.json().at("btx").at("posterior");
  EXPECT_EQ(post_w.size(), 3u);
  EXPECT_GT(post_w.at("code").get<double>(), 0.5) << r.body;

  // A streaming client that leaves after 0.6 s (of a 1.8 s generation): the server notices at
  // its next write, cancels the generation and goes on serving.
  const std::string long_body =
      R"({"prompt": "def f_1(x):", "max_tokens": 60, "temperature": 0, "stream": true})";
  const auto cut = server.request("/v1/completions", long_body, {"--max-time", "0.6"});
  EXPECT_NE(cut.body.find("data: {"), std::string::npos) << cut.body;  // some text came
  EXPECT_EQ(cut.body.find("[DONE]"), std::string::npos) << cut.body;
  nlohmann::json stats;
  for (int i = 0; i < 200; ++i) {
    stats = server.request("/health").json();
    if (stats.at("running") == 0 && stats.at("cancelled").get<int>() >= 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(stats.at("cancelled"), 1) << stats.dump();
  EXPECT_EQ(stats.at("running"), 0) << stats.dump();
  const std::regex cancelled(R"((\d+) generated, finish cancelled)");
  std::smatch match;
  const std::string log = server.log();
  ASSERT_TRUE(std::regex_search(log, match, cancelled)) << log;
  EXPECT_LT(std::stoi(match[1]), 60) << log;
  EXPECT_EQ(server.request("/v1/completions", body).status, 200);
  EXPECT_TRUE(server.running());
  EXPECT_EQ(server.terminate(), 0);

  // The ensemble batched: concurrent requests decoded together, each with its own posterior,
  // the same texts and posteriors as one at a time.
  ServerProcess batched(run.root, {"--run", run.root.string(), "--model", "merged/ensemble",
                                   "--batch", "4", "--token-delay-ms", "10"});
  ASSERT_GT(batched.port(), 0);
  const std::vector<std::string> prompts = {"def f_1(x):", "In the beginning"};
  std::string ens_script;
  for (size_t i = 0; i < prompts.size(); ++i) {
    write_file_atomic(
        run.root / ("ens-" + std::to_string(i) + ".json"),
        nlohmann::json({{"prompt", prompts[i]}, {"max_tokens", 12}, {"temperature", 0}}).dump());
    ens_script += "curl -s -o " + (run.root / ("ens-out-" + std::to_string(i) + ".json")).string() +
                  " -H 'Content-Type: application/json' --data-binary @" +
                  (run.root / ("ens-" + std::to_string(i) + ".json")).string() + " " +
                  batched.url("/v1/completions") + " & ";
  }
  ASSERT_EQ(run_process({"sh", "-c", ens_script + "wait"}).exit_code, 0);
  auto ensemble = open_decoder(ModelFolder::open(run.root / "merged/ensemble"), true);
  const Tokenizer tok = Tokenizer::load(run.tokenizer_file());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto out =
        nlohmann::json::parse(read_file(run.root / ("ens-out-" + std::to_string(i) + ".json")));
    GenerateOptions g;
    g.max_tokens = 12;
    const auto expect = generate(*ensemble, tok, tok.encode(prompts[i]), g);
    EXPECT_EQ(out.at("choices").at(0).at("text"), expect.text) << prompts[i];
    const auto want = ensemble->state().at("posterior");
    for (const auto& [name, w] : want.items()) {
      EXPECT_NEAR(out.at("btx").at("posterior").at(name).get<double>(), w.get<double>(), 1e-6)
          << prompts[i] << " " << name;
    }
  }
  EXPECT_GE(batched.request("/health").json().at("peak_running").get<int>(), 2);
}

TEST_F(ServeTest, OpenAiClientGetsCompletionsChatLogprobsEchoAndN) {
  const RunDir run = fresh_run("openai");
  auto m = run_btx("merge --run " + run.root.string() + " --method btx");
  ASSERT_EQ(m.code, 0) << m.output;
  const fs::path model = run.root / "merged" / "btx";
  ServerProcess server(run.root, {"--run", run.root.string(), "--model", "merged/btx"});
  ASSERT_GT(server.port(), 0);
  const Tokenizer tok = Tokenizer::load(run.tokenizer_file());
  const std::string prompt = "def f_1(x):\n    return";
  const std::vector<ChatMessage> messages = {{"system", "Answer in code."},
                                             {"user", "def f_1(x):"}};
  const std::vector<std::string> score = {"def f_1(x):\n    return x + 1",
                                          "the cat sat on the mat"};
  nlohmann::json msgs = nlohmann::json::array();
  for (const auto& x : messages) msgs.push_back({{"role", x.role}, {"content", x.content}});
  const auto out = run_node("openai_client.mjs",
                            {{"base_url", server.url("/v1")},
                             {"model", "btx"},
                             {"prompt", prompt},
                             {"messages", msgs},
                             {"score", score}},
                            run.root);
  ASSERT_FALSE(out.is_null()) << server.log();
  EXPECT_EQ(out["models"], nlohmann::json({"btx"}));

  // Completions, whole and streamed: btx generate's greedy text.
  auto decoder = open_decoder(ModelFolder::open(model), true);
  GenerateOptions g;
  g.max_tokens = 8;
  g.sampling.temperature = 0;
  const auto expect = generate(*decoder, tok, tok.encode(prompt), g);
  EXPECT_EQ(out["completion"]["text"], expect.text);
  EXPECT_EQ(out["completion"]["usage"]["prompt_tokens"], tok.encode(prompt).size());
  EXPECT_EQ(out["completion"]["usage"]["completion_tokens"], expect.tokens.size());
  EXPECT_EQ(out["completion_stream"]["text"], expect.text);
  EXPECT_EQ(out["completion_stream"]["usage"], out["completion"]["usage"]);
  EXPECT_GT(out["completion_stream"]["chunks"].get<int>(), 2);

  // Chat, whole and streamed: the plain template's rendering, generated greedily to its stops.
  const ChatTemplate plain = builtin_chat_template("plain");
  GenerateOptions gc = g;
  gc.stop = plain.stop;
  const auto chat = generate(*decoder, tok, tok.encode(plain.render(messages, true)), gc);
  const std::string reply =
      chat.text.substr(std::min(chat.text.find_first_not_of(' '), chat.text.size()));
  EXPECT_EQ(out["chat"]["content"], reply);
  EXPECT_EQ(out["chat"]["role"], "assistant");
  EXPECT_EQ(out["chat"]["object"], "chat.completion");
  EXPECT_EQ(out["chat"]["usage"]["prompt_tokens"], tok.encode(plain.render(messages, true)).size());
  EXPECT_EQ(out["chat_stream"]["content"], reply);
  EXPECT_EQ(out["chat_stream"]["role"], "assistant");

  // logprobs: each generated token's log-probability is btx's, and greedy picks the best.
  const auto& lp = out["logprobs"];
  ASSERT_TRUE(lp.is_object()) << out.dump();
  std::vector<int32_t> seq = tok.encode(prompt);
  const auto prompt_len = seq.size();
  const auto gen4 = generate(*decoder, tok, seq, [&] {
    auto o = g;
    o.max_tokens = 4;
    return o;
  }());
  seq.insert(seq.end(), gen4.tokens.begin(), gen4.tokens.end());
  const auto ours = btx_scores(model, seq);
  ASSERT_EQ(lp["token_logprobs"].size(), gen4.tokens.size());
  for (size_t i = 0; i < gen4.tokens.size(); ++i) {
    EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), ours[prompt_len - 1 + i], 1e-4) << i;
    EXPECT_EQ(lp["tokens"][i], tok.piece_text(gen4.tokens[i]));
    EXPECT_EQ(lp["top_logprobs"][i].size(), 3u);
    double best = -1e9;
    for (const auto& [t, v] : lp["top_logprobs"][i].items()) best = std::max(best, v.get<double>());
    EXPECT_DOUBLE_EQ(best, lp["token_logprobs"][i].get<double>());
  }
  EXPECT_EQ(lp["text_offset"][0], 0);
  EXPECT_EQ(out["logprobs_text"], gen4.text);
  const auto& clp = out["chat_logprobs"]["content"];
  ASSERT_FALSE(clp.empty()) << out.dump();
  for (const auto& t : clp) {
    ASSERT_EQ(t["top_logprobs"].size(), 2u);
    EXPECT_DOUBLE_EQ(t["top_logprobs"][0]["logprob"].get<double>(), t["logprob"].get<double>());
  }

  // echo with max_tokens 0 (lm-evaluation-harness): every text back with its tokens'
  // log-probabilities, the first null, the rest btx's forward pass's (what `btx eval` sums).
  ASSERT_EQ(out["echo"].size(), score.size());
  for (size_t k = 0; k < score.size(); ++k) {
    const auto& c = out["echo"][k];
    EXPECT_EQ(c["index"], k);
    EXPECT_EQ(c["text"], score[k]);
    const auto ids = tok.encode(score[k]);
    const auto& tl = c["logprobs"]["token_logprobs"];
    ASSERT_EQ(tl.size(), ids.size());
    EXPECT_TRUE(tl[0].is_null());
    const auto expect_lp = btx_scores(model, ids);
    std::string joined;
    for (size_t t = 0; t < ids.size(); ++t) {
      joined += c["logprobs"]["tokens"][t].get<std::string>();
      if (t > 0) EXPECT_NEAR(tl[t].get<double>(), expect_lp[t - 1], 1e-5) << score[k] << " @" << t;
    }
    EXPECT_EQ(joined, score[k]);
  }

  // n = 3 of two prompts: six choices in order; choice j of a prompt samples with seed + j, so the
  // two prompts (the same text) give the same three.
  ASSERT_EQ(out["n"].size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(out["n"][i]["index"], i);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(out["n"][i]["text"], out["n"][i + 3]["text"]);

  // Refusals in OpenAI's shape, the field named.
  ASSERT_EQ(out["errors"].size(), 3u);
  EXPECT_EQ(out["errors"][0]["status"], 400);
  EXPECT_EQ(out["errors"][0]["param"], "logprobs");
  EXPECT_NE(out["errors"][0]["message"].get<std::string>().find("at most 20"), std::string::npos);
  EXPECT_EQ(out["errors"][1]["status"], 400);
  EXPECT_EQ(out["errors"][1]["param"], "messages[0].role");
  EXPECT_NE(out["errors"][1]["message"].get<std::string>().find("unknown role \"robot\""),
            std::string::npos);
  EXPECT_EQ(out["errors"][2]["status"], 404);
}

TEST_F(ServeTest, CorsIsOffByDefaultAndDeepBodiesAreRefused) {
  REQUIRE_CURL();
  const RunDir run = fresh_run("cors");
  ServerProcess plain(run.root, {"--run", run.root.string(), "--model", "seed"});
  ASSERT_GT(plain.port(), 0);
  auto r = plain.request("/health", "", {"-i"});
  EXPECT_EQ(r.body.find("Access-Control-Allow-Origin"), std::string::npos) << r.body;
  // A body of 100000 nested arrays (200 kB, under the 1 MB limit) is a 400; the server serves on.
  r = plain.request("/v1/completions", std::string(100000, '[') + std::string(100000, ']'));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("100000 levels deep"), std::string::npos) << r.body;
  EXPECT_EQ(plain.request("/health").status, 200);
  ServerProcess cors(run.root, {"--run", run.root.string(), "--model", "seed", "--cors-origin",
                                "http://localhost:3000"});
  ASSERT_GT(cors.port(), 0);
  r = cors.request("/v1/completions", R"({"prompt": "the", "max_tokens": 2})", {"-i"});
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("Access-Control-Allow-Origin: http://localhost:3000"), std::string::npos)
      << r.body;
  r = cors.request("/v1/chat/completions", "",
                   {"-i", "-X", "OPTIONS", "-H", "Origin: http://localhost:3000", "-H",
                    "Access-Control-Request-Method: POST", "-H",
                    "Access-Control-Request-Headers: content-type, authorization"});
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_NE(r.body.find("Access-Control-Allow-Methods: GET, POST, OPTIONS"), std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("Access-Control-Allow-Headers: content-type, authorization"),
            std::string::npos)
      << r.body;
}

// Found by an attacker: departed clients held their queue slots and their generations, and
// connections sending their headers a byte at a time held every worker thread, so that /health
// went unanswered. A client that leaves now gives both back at once, streaming or not, and a
// connection with no complete request within --header-timeout is closed.
TEST_F(ServeTest, DepartedClientsGiveBackTheirSlotsAndTricklingConnectionsAreClosed) {
  REQUIRE_CURL();
  const RunDir run = fresh_run("departed");
  // One request at a time (--batch 1), one waiting (--queue 1), 50 ms a token.
  ServerProcess server(
      run.root, {"--run", run.root.string(), "--model", "seed", "--batch", "1", "--queue", "1",
                 "--token-delay-ms", "50", "--http-threads", "16", "--header-timeout", "1"});
  ASSERT_GT(server.port(), 0);
  auto post = [&](const std::string& name, int max_tokens, const std::string& curl_extra) {
    write_file_atomic(run.root / (name + ".json"),
                      R"({"prompt": "def f_1(x):", "temperature": 0, "max_tokens": )" +
                          std::to_string(max_tokens) + "}");
    return "curl -s -o /dev/null -w '" + name + "=%{http_code}\\n' " + curl_extra +
           " -H 'Content-Type: application/json' --data-binary @" +
           (run.root / (name + ".json")).string() + " " + server.url("/v1/completions");
  };
  // A runs 3 s; B waits behind it and leaves after 0.5 s; C, sent after B left, takes B's slot
  // (before, B held it until A ended, and C got 503); D runs and leaves: its generation stops.
  const std::string script = post("A", 60, "") + " & sleep 0.3; " + post("B", 5, "--max-time 0.5") +
                             "; sleep 0.5; " + post("C", 1, "") + " & sleep 0.2; wait";
  const auto out = run_process({"sh", "-c", script});
  EXPECT_NE(out.out.find("A=200"), std::string::npos) << out.out;
  EXPECT_NE(out.out.find("B=000"), std::string::npos) << out.out;  // curl gave up
  EXPECT_NE(out.out.find("C=200"), std::string::npos) << out.out << server.log();
  const auto d = run_process({"sh", "-c", post("D", 200, "--max-time 0.5")});
  nlohmann::json stats;
  for (int i = 0; i < 100; ++i) {
    stats = server.request("/health").json();
    if (stats.at("running") == 0 && stats.at("cancelled").get<int>() >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(stats.at("cancelled"), 2) << stats.dump();  // B (queued) and D (running)
  EXPECT_EQ(stats.at("running"), 0) << stats.dump();
  const std::regex cancelled(R"((\d+) generated, finish cancelled)");
  const std::string log = server.log();
  std::smatch match;
  ASSERT_TRUE(std::regex_search(log, match, cancelled)) << log;
  EXPECT_LT(std::stoi(match[1]), 200) << log;

  // 100 connections trickle header lines, a line every 200 ms, more than the 16 threads: /health
  // is answered once the deadline has closed them, while they are still trickling.
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<int> socks;
  for (int i = 0; i < 100; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    const std::string start = "GET /health HTTP/1.1\r\nHost: x\r\n";
    ::send(fd, start.data(), start.size(), MSG_NOSIGNAL);
    socks.push_back(fd);
  }
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    while (!stop) {
      for (int fd : socks) ::send(fd, "X-A: b\r\n", 8, MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto health = server.request("/health", "", {"--max-time", "30"});
  stop = true;
  trickle.join();
  EXPECT_EQ(health.status, 200) << health.body;
  int closed = 0;
  for (int fd : socks) {
    char c;
    const ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
    closed += n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    ::close(fd);
  }
  EXPECT_GE(closed, 16);
  EXPECT_GE(server.request("/health").json().at("idle_connections_closed").get<int>(), 16);
  EXPECT_TRUE(server.running());
}

}  // namespace
}  // namespace btx::testing
