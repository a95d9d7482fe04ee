// `btx serve` driven over loopback by real HTTP clients (curl, and the official OpenAI client):
// completions and chat completions equal in-process generation, whole and streamed as server-sent
// events; logprobs and echo equal btx's own per-token log-probabilities; n and prompt lists;
// CORS; health and models; bad requests get
// JSON errors with the right status; a flood beyond the queue gets 503 while health checks are
// still answered; a streaming client that disconnects stops its generation; SIGTERM stops the
// server cleanly.
#include "e2e/serve_util.h"

namespace btx::testing {
namespace {

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
    const auto stats = server.health_when(
        [](const nlohmann::json& s) { return s.at("cancelled") == 1 && s.at("running") == 0; }, 200,
        50);
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
  const auto stats = server.health_when(
      [](const nlohmann::json& s) {
        return s.at("running") == 0 && s.at("cancelled").get<int>() >= 1;
      },
      200, 100);
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

}  // namespace
}  // namespace btx::testing
