// `btx serve` with the clients people use and the ones that misbehave: the official OpenAI client
// (completions, chat, logprobs, echo, n), CORS and deeply nested bodies, and clients that leave
// (their queue slots and generations given back) or trickle their headers (closed by the deadline).
#include "e2e/serve_util.h"

namespace btx::testing {
namespace {

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
  // The logit bias forbids the greedy text's first token and favours another.
  auto decoder = open_decoder(ModelFolder::open(model), true);
  GenerateOptions g;
  g.max_tokens = 8;
  g.sampling.temperature = 0;
  const auto expect = generate(*decoder, tok, tok.encode(prompt), g);
  ASSERT_FALSE(expect.tokens.empty());
  const int32_t favoured = tok.encode(" x")[0];
  const nlohmann::json logit_bias = {{std::to_string(expect.tokens[0]), -100},
                                     {std::to_string(favoured), 1.5}};
  const auto out = run_node("openai_client.mjs",
                            {{"base_url", server.url("/v1")},
                             {"model", "btx"},
                             {"prompt", prompt},
                             {"messages", msgs},
                             {"score", score},
                             {"logit_bias", logit_bias}},
                            run.root);
  ASSERT_FALSE(out.is_null()) << server.log();
  EXPECT_EQ(out["models"], nlohmann::json({"btx"}));

  // Completions, whole and streamed: btx generate's greedy text.
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

  // Penalties and the logit bias: btx generate's greedy text with the same options, whole,
  // streamed and batched beside a plain request; chat's too.
  GenerateOptions gp = g;
  gp.max_tokens = 12;
  EXPECT_EQ(out["penalties"]["plain"], generate(*decoder, tok, tok.encode(prompt), gp).text);
  gp.sampling.presence_penalty = 0.8;
  gp.sampling.frequency_penalty = 1.5;
  gp.sampling.logit_bias = {{expect.tokens[0], -100.0}, {favoured, 1.5}};
  std::sort(gp.sampling.logit_bias.begin(), gp.sampling.logit_bias.end());
  const auto penalized = generate(*decoder, tok, tok.encode(prompt), gp);
  EXPECT_NE(penalized.tokens[0], expect.tokens[0]);
  EXPECT_EQ(out["penalties"]["penalized"], penalized.text);
  EXPECT_EQ(out["penalties"]["streamed"], penalized.text);
  EXPECT_NE(out["penalties"]["penalized"], out["penalties"]["plain"]);
  GenerateOptions gcp = gp;
  gcp.max_tokens = 8;
  gcp.stop = builtin_chat_template("plain").stop;
  const auto chat_p = generate(
      *decoder, tok, tok.encode(builtin_chat_template("plain").render(messages, true)), gcp);
  EXPECT_EQ(out["chat_penalized"],
            chat_p.text.substr(std::min(chat_p.text.find_first_not_of(' '), chat_p.text.size())));

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
  const auto stats = server.health_when(
      [](const nlohmann::json& s) {
        return s.at("running") == 0 && s.at("cancelled").get<int>() >= 2;
      },
      100, 100);
  EXPECT_EQ(stats.at("cancelled"), 2) << stats.dump();  // B (queued) and D (running)
  EXPECT_EQ(stats.at("running"), 0) << stats.dump();
  const std::regex cancelled(R"((\d+) generated, finish cancelled)");
  const std::string log = server.log();
  std::smatch match;
  ASSERT_TRUE(std::regex_search(log, match, cancelled)) << log;
  EXPECT_LT(std::stoi(match[1]), 200) << log;

  // 100 connections trickle header lines, a line every 200 ms, more than the 16 threads: /health
  // is answered once the deadline has closed them, while they are still trickling.
  std::vector<int> socks;
  for (int i = 0; i < 100; ++i) {
    const int fd = connect_to(server.port());
    ASSERT_GE(fd, 0);
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
