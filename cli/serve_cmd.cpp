// `btx serve`: a model over HTTP with OpenAI's completions API (serve/server.h).
#include <signal.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <iostream>
#include <thread>

#include "btx/generate/generate.h"
#include "btx/run/model_folder.h"
#include "btx/serve/server.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "cli/commands.h"

namespace btx::cli {

namespace {
volatile std::sig_atomic_t g_stop_requested = 0;
}  // namespace

std::vector<Command> add_serve_commands(CLI::App& app) {
  struct ServeArgs {
    ModelArg model;
    std::string tokenizer;
    serve::ServeOptions opts;
    bool no_cache = false;
    std::string chat_template;
  };
  auto a = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand(
      "serve",
      "Serve a model (dense, MoE, SMEAR, ensemble) over HTTP with OpenAI's API: POST "
      "/v1/completions (prompt lists, n, echo, logprobs), POST /v1/chat/completions (the chat "
      "template), both streamed with server-sent events on request; GET /v1/models, GET /health");
  add_model_arg(cmd, a->model, "Checkpoint or ensemble folder");
  cmd->add_option("--tokenizer", a->tokenizer,
                  "tokenizer.json or tokenizer.model (default: the model's run's)");
  cmd->add_option("--host", a->opts.host,
                  "Address to listen on (0.0.0.0: every interface; there is no authentication)")
      ->capture_default_str();
  cmd->add_option("--port", a->opts.port, "Port (0: any free one, printed)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--name", a->opts.model_id, "Model name clients use (default: the folder's)");
  cmd->add_option("--queue", a->opts.queue,
                  "Requests that may wait while others are generated; more get 503")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--batch", a->opts.max_batch,
                  "Requests decoded together (continuous batching; 1 with --no-cache)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--prefill-rows", a->opts.prefill_rows,
                  "Prompts of requests joining the batch that are read in one forward, "
                  "left-padded (0: up to --batch; 1: each alone)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->add_option(
         "--http-threads", a->opts.http_threads,
         "Connections served at once, at least --queue + --batch + 8; more wait for a free thread")
      ->capture_default_str()
      ->check(CLI::Range(2, 4096));
  cmd->add_option("--header-timeout", a->opts.header_timeout_s,
                  "Seconds a connection may stay without a complete request (idle, or sending "
                  "its headers slowly) before it is closed; 0: never")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("--max-tokens-limit", a->opts.limits.max_tokens,
                  "The largest max_tokens a request may ask for")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--max-body-bytes", a->opts.limits.max_body_bytes,
                  "Largest request body (bigger ones get 413)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{64}, size_t{1} << 30));
  cmd->add_option("--token-delay-ms", a->opts.token_delay_ms,
                  "Sleep this long before every token: a slow model, for testing clients")
      ->check(CLI::Range(0.0, 60000.0));
  cmd->add_flag("--no-cache", a->no_cache, "Recompute the whole prefix for every token");
  cmd->add_option("--chat-template", a->chat_template,
                  "How chat messages become the prompt: plain ('User: ...\\n\\nAssistant:'), "
                  "chatml, none, a JSON template file (docs/interop.md), or a model's own Jinja "
                  "template: its tokenizer_config.json or a .jinja file (default: the template "
                  "of the tokenizer_config.json beside the model's tokenizer.json, else plain)");
  cmd->add_option("--cors-origin", a->opts.cors_origin,
                  "Let browser pages of this origin call the server (e.g. http://localhost:3000, "
                  "or * for any); off by default");
  cmd->add_option("--max-logprobs", a->opts.limits.max_logprobs,
                  "The most alternatives per token a request may ask for (logprobs, "
                  "top_logprobs)")
      ->check(CLI::Range(int64_t{0}, int64_t{1000}))
      ->capture_default_str();
  return {{cmd, [a] {
             const fs::path dir = a->model.dir();
             const fs::path tok_file = model_tokenizer(dir, a->tokenizer);
             auto decoder = open_decoder(ModelFolder::open(dir), !a->no_cache);
             const std::string what = decoder->describe();
             auto& o = a->opts;
             o.chat_template = resolve_chat_template(a->chat_template, tok_file);
             if (o.model_id.empty()) {
               o.model_id = fs::absolute(dir).lexically_normal().filename().string();
               if (o.model_id.empty()) o.model_id = fs::absolute(dir).parent_path().filename();
             }
             // SIGINT/SIGTERM set a flag that a watcher thread turns into a clean stop (threads
             // started before main, such as OpenBLAS's, may be the ones a signal lands on, so
             // sigwait in one thread would not do); a client that disconnects must not kill the
             // process with SIGPIPE.
             struct sigaction sa {};
             sa.sa_handler = [](int) { g_stop_requested = 1; };
             sigemptyset(&sa.sa_mask);
             sigaction(SIGINT, &sa, nullptr);
             sigaction(SIGTERM, &sa, nullptr);
             signal(SIGPIPE, SIG_IGN);
             serve::Server server(std::move(decoder), Tokenizer::load(tok_file), o);
             const int port = server.bind();
             std::atomic<bool> listening{true};
             std::thread watcher([&] {
               while (listening && !g_stop_requested) {
                 std::this_thread::sleep_for(std::chrono::milliseconds(100));
               }
               if (g_stop_requested) {
                 std::cerr << "btx serve: stopping\n";
                 server.stop();
               }
             });
             std::cerr << fmt::format(
                 "btx serve: {} ({}) on http://{}:{} (batch {}, queue {}, max_tokens <= {})\n",
                 o.model_id, what, o.host, port, server.max_batch(), o.queue, o.limits.max_tokens);
             if (o.host != "127.0.0.1" && o.host != "localhost" && o.host != "::1") {
               std::cerr << "btx serve: warning: listening beyond this machine, with no "
                            "authentication\n";
             }
             server.listen();
             listening = false;
             watcher.join();
           }}};
}

}  // namespace btx::cli
