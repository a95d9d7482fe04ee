// `btx serve`: an HTTP server (cpp-httplib) for one model, with OpenAI's API (completions.h).
//   POST /v1/completions        completions: prompts (one or a list), n choices each, echo and
//                               logprobs; whole or streamed as server-sent events
//   POST /v1/chat/completions   chat: messages rendered with the chat template; whole or streamed
//   GET  /v1/models        the served model
//   GET  /health           {"status": "ok", ...} with the queue's state
// One engine thread runs the model for the requests in arrival order: up to --batch of them
// decoded together with continuous batching (a request joins the running batch at the next
// step and leaves it when it ends) where the decoder can batch (a KV cache: dense, MoE, SMEAR,
// the ensemble), otherwise (--no-cache) one at a time.
// Requests wait in a bounded queue, and beyond it get 503 at once with Retry-After. HTTP threads
// only parse, wait and write, so health checks are answered while the model works. A streaming
// client that goes away stops its generation at the next token (and a queued one is dropped before
// it starts). Errors are JSON in OpenAI's shape: 400 for a bad body or field, 404 for an unknown
// path or model, 413 for a body over the size limit, 503 when the queue is full. With a CORS
// origin, every response allows it and OPTIONS preflights are answered (204).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "btx/data/tokenizer.h"
#include "btx/generate/generate.h"
#include "btx/serve/responses.h"

namespace btx::serve {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8000;          // 0: any free port (bind() says which)
  std::string model_id;     // the name clients see in /v1/models and responses
  size_t queue = 16;        // requests that may wait while others run; more get 503
  size_t max_batch = 8;     // requests decoded together (continuous batching; 1: one at a time)
  size_t prefill_rows = 0;  // prompts of joining requests read in one forward (0: max_batch)
  // Connections served at once (at least queue + max_batch + 8): idle and trickling
  // connections each hold one until header_timeout_s, so the rest stay free for health checks.
  size_t http_threads = 256;
  double header_timeout_s = 10;  // a connection with no complete request for this long is closed
  Limits limits;
  double token_delay_ms = 0;  // sleep before every token: a slow model, for testing clients
  ChatTemplate chat_template = builtin_chat_template("plain");  // for /v1/chat/completions
  std::string cors_origin;  // Access-Control-Allow-Origin for browser clients ("": no CORS)
};

class Server {
 public:
  Server(std::unique_ptr<Decoder> decoder, Tokenizer tok, ServeOptions opts);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; returns the port. An error names the address when it is taken.
  int bind();
  // Serves until stop() (from another thread or a signal handler's thread).
  void listen();
  void stop();
  // Requests decoded together: --batch where the model can batch (a KV cache), else 1.
  size_t max_batch() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace btx::serve
