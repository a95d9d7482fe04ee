#include "btx/serve/server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include "btx/serve/connections.h"
#include "btx/serve/engine.h"
#include "btx/serve/http_framing.h"

namespace btx::serve {

namespace {

void send_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(dump_json(body), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message,
                const std::string& type, const std::string& param = "") {
  send_json(res, status, error_body(message, type, param));
}

Endpoint endpoint_of(const httplib::Request& req) {
  return {req.remote_addr, req.remote_port, req.local_port};
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Server::Impl {
  Impl(std::unique_ptr<Decoder> d, Tokenizer t, ServeOptions o)
      : decoder(std::move(d)), tok(std::move(t)), opts(std::move(o)) {
    served = {opts.model_id, decoder->context(), decoder->vocab_size()};
    engine = std::make_unique<Engine>(
        *decoder, tok,
        EngineOptions{opts.queue, opts.max_batch, opts.prefill_rows, opts.token_delay_ms});
    routes();
  }

  void routes();
  void handle(const httplib::Request& req, httplib::Response& res, bool chat);
  void stream(const httplib::Request& req, const CompletionRequest& r,
              const std::vector<std::shared_ptr<Job>>& jobs, const CompletionIds& ids,
              const std::shared_ptr<const ClientWatch>& client, httplib::Response& res);

  CompletionIds next_ids(bool chat) {
    return {fmt::format("{}-{:x}{:06d}", chat ? "chatcmpl" : "cmpl", started, ++request_count),
            unix_now(), opts.model_id};
  }
  uint64_t next_seed() {
    std::lock_guard<std::mutex> lock(seed_m);
    return seeds();
  }

  std::unique_ptr<Decoder> decoder;
  Tokenizer tok;
  ServeOptions opts;
  ServedModel served;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<HeaderDeadline> deadline;  // made by bind(), once the port is known
  // Heads of up to 64 KiB; bodies up to the limit (a bigger Content-Length: 413 at once).
  FramedServer http{opts.limits.max_body_bytes, 64 * 1024};
  const int64_t started = unix_now();
  std::atomic<int64_t> request_count{0};
  std::mutex seed_m;
  std::mt19937_64 seeds{std::random_device{}()};
};

void Server::Impl::routes() {
  // Every queued and running request holds a thread while it waits; a few more stay free for
  // health checks and the requests answered 503.
  const size_t threads = std::max(opts.http_threads, opts.queue + opts.max_batch + 8);
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(opts.limits.max_body_bytes);
  // A connection is inside a request from its handler's start to its response's end (a stream's
  // end: stream() holds it once more); HeaderDeadline closes those outside one for too long.
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response&) {
    if (deadline) deadline->began(endpoint_of(req));
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http.set_post_routing_handler([this](const httplib::Request& req, httplib::Response&) {
    if (deadline) deadline->ended(endpoint_of(req));
  });
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    nlohmann::json body = engine->stats();
    body["model"] = opts.model_id;
    body["status"] = engine->stopping() ? "stopping" : "ok";
    body["idle_connections_closed"] = deadline ? deadline->closed() : 0;
    send_json(res, engine->stopping() ? 503 : 200, body);
  });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200,
              {{"object", "list"},
               {"data",
                {{{"id", opts.model_id},
                  {"object", "model"},
                  {"created", started},
                  {"owned_by", "btx"},
                  {"btx",
                   {{"decoder", decoder->describe()},
                    {"context", served.context},
                    {"batch", engine->max_batch()}}}}}}});
  });
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle(req, res, false);
  });
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle(req, res, true);
  });
  if (!opts.cors_origin.empty()) {
    // Browser clients of another origin: every response allows it, and preflights are answered.
    const httplib::Headers cors = {{"Access-Control-Allow-Origin", opts.cors_origin},
                                   {"Vary", "Origin"}};
    http.set_default_headers(cors);
    http.set_refusal_headers(cors);
    http.Options(R"(/.*)", [](const httplib::Request& req, httplib::Response& res) {
      res.status = 204;
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      const std::string asked = req.get_header_value("Access-Control-Request-Headers");
      res.set_header("Access-Control-Allow-Headers",
                     asked.empty() ? "Content-Type, Authorization" : asked);
      res.set_header("Access-Control-Max-Age", "600");
    });
  }
  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler's own JSON error
    if (res.status == 404) {
      send_error(res, 404,
                 fmt::format("no route for {} {} (routes: POST /v1/completions, POST "
                             "/v1/chat/completions, GET /v1/models, GET /health)",
                             req.method, req.path),
                 "invalid_request_error");
    } else if (res.status == 413 || (res.status == 400 && FramedServer::body_over_limit())) {
      res.status = 413;  // a chunked body past the limit
      send_error(res, 413,
                 fmt::format("the request body is larger than this server's limit of {} bytes",
                             opts.limits.max_body_bytes),
                 "invalid_request_error");
    } else {
      // What cpp-httplib refuses after the framing check (http_framing.h): a body shorter than
      // its Content-Length or malformed chunks (400), a target over 8192 bytes (414), a Range.
      send_error(res, res.status,
                 res.status == 400   ? "the request's body is not what its head announced (cut "
                                       "short, or malformed chunks)"
                 : res.status == 414 ? "the request's target is longer than 8192 bytes"
                                     : fmt::format("HTTP {}", res.status),
                 "invalid_request_error");
    }
  });
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        send_error(res, 500, what, "server_error");
      });
}

void Server::Impl::handle(const httplib::Request& req, httplib::Response& res, bool chat) {
  CompletionRequest r;
  try {
    r = chat ? parse_chat_request(req.body, tok, opts.chat_template, served, opts.limits,
                                  next_seed())
             : parse_completion_request(req.body, tok, served, opts.limits, next_seed());
  } catch (const RequestError& e) {
    send_error(res, e.status, e.what(), e.type, e.param);
    return;
  }
  if (r.choices() > opts.queue) {
    send_error(res, 400,
               fmt::format("the request asks for {} completions ({} prompts x n = {}); this server "
                           "queues at most {} at once (btx serve --queue)",
                           r.choices(), r.prompts.size(), r.n, opts.queue),
               "invalid_request_error", r.n > 1 ? "n" : "prompt");
    return;
  }
  // The client's connection, watched: a client that leaves gives back its queue slots and stops
  // its generations at once, and the engine asks it when a slot is wanted.
  auto client = std::make_shared<const ClientWatch>(endpoint_of(req));
  std::vector<std::shared_ptr<Job>> jobs;
  for (size_t i = 0; i < r.choices(); ++i) {
    auto job = std::make_shared<Job>();
    job->prompt = r.prompt_of(i);
    job->options = r.options_of(i);
    if (r.echo && r.options.logprobs >= 0) job->score_prompt = r.options.logprobs;
    job->gone = [client] { return client->gone(); };
    if (!engine->submit(job)) {
      engine->withdraw(jobs);  // dropped before they start
      res.set_header("Retry-After", "1");
      send_error(res, 503,
                 engine->stopping()
                     ? "the server is shutting down"
                     : fmt::format("the server is busy: {} requests are queued, its limit; retry "
                                   "later",
                                   opts.queue),
                 "server_busy");
      return;
    }
    jobs.push_back(job);
  }
  const CompletionIds ids = next_ids(chat);
  if (r.stream) {
    stream(req, r, jobs, ids, client, res);
    return;
  }
  std::vector<ChoiceResult> results;
  nlohmann::json state;
  for (const auto& job : jobs) {
    std::unique_lock<std::mutex> lock(job->m);
    while (!job->cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return job->done; })) {
      if (client->gone()) {
        lock.unlock();
        engine->withdraw(jobs);
        spdlog::info("client {}:{} left: its {} completion(s) cancelled", req.remote_addr,
                     req.remote_port, jobs.size());
        return;
      }
    }
    if (!job->error.empty()) {
      lock.unlock();
      engine->withdraw(jobs);
      send_error(res, 500, job->error, "server_error");
      return;
    }
    results.push_back({job->result, job->prompt_logprobs});
    state = job->state;
  }
  send_json(res, 200, completion_response(ids, r, results, tok, state));
}

void Server::Impl::stream(const httplib::Request& req, const CompletionRequest& r,
                          const std::vector<std::shared_ptr<Job>>& jobs, const CompletionIds& ids,
                          const std::shared_ptr<const ClientWatch>& client,
                          httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  // What is sent (responses.h) and when the connection last carried anything.
  struct Progress {
    ResponseStream response;
    std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
  };
  // The request is kept by value beside the stream that refers to it.
  auto request = std::make_shared<const CompletionRequest>(r);
  auto p = std::make_shared<Progress>(Progress{ResponseStream(ids, *request, tok)});
  // Withdrawn from the engine: queued jobs give their slots back now.
  auto cancel_all = [this, jobs] { engine->withdraw(jobs); };
  // The response outlives this handler: the connection stays inside a request until it ends.
  const Endpoint ep = endpoint_of(req);
  if (deadline) deadline->began(ep);
  auto provider = [request, jobs, p, cancel_all, client](size_t /*offset*/,
                                                         httplib::DataSink& sink) {
    // A client that has gone (seen on its socket, or a failed write): stop every generation.
    if (client->gone()) {
      cancel_all();
      return false;
    }
    auto write = [&](const std::vector<std::string>& events) {
      for (const auto& e : events) {
        p->last_write = std::chrono::steady_clock::now();
        if (!sink.write(e.data(), e.size())) {
          cancel_all();
          return false;
        }
      }
      return true;
    };
    ResponseStream& response = p->response;
    // Wait for text or an end (of the first choice still running; briefly when there are
    // several, so that the others' text is not held up), looking at the client every 100 ms.
    size_t waiting = 0;
    while (waiting < jobs.size() && response.ended(waiting)) ++waiting;
    if (waiting < jobs.size()) {
      auto& job = jobs[waiting];
      std::unique_lock<std::mutex> lock(job->m);
      job->cv.wait_for(
          lock, jobs.size() == 1 ? std::chrono::milliseconds(100) : std::chrono::milliseconds(50),
          [&] { return job->done || !job->pending.empty(); });
    }
    const auto written = p->last_write;
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (response.ended(i)) continue;
      auto& job = jobs[i];
      std::string text;
      bool done = false;
      {
        std::lock_guard<std::mutex> lock(job->m);
        text.swap(job->pending);
        done = job->done;
      }
      if (!write(response.text(i, std::move(text)))) return false;
      if (done && !write(response.end(i, job->result, job->state, job->error))) return false;
    }
    if (response.all_ended()) {
      if (!write(response.close())) return false;
      sink.done();
      return true;
    }
    // While waiting (queued, or a slow token) an SSE comment each second keeps the connection
    // alive through proxies.
    const auto now = std::chrono::steady_clock::now();
    if (p->last_write == written && now - written > std::chrono::seconds(1)) {
      return write({": waiting\n\n"});
    }
    return true;
  };
  res.set_chunked_content_provider("text/event-stream", provider,
                                   [this, cancel_all, ep](bool success) {
                                     if (!success) cancel_all();
                                     if (deadline) deadline->ended(ep);
                                   });
}

Server::Server(std::unique_ptr<Decoder> decoder, Tokenizer tok, ServeOptions opts)
    : impl_(std::make_unique<Impl>(std::move(decoder), std::move(tok), std::move(opts))) {}

Server::~Server() {
  stop();
}

size_t Server::max_batch() const {
  return impl_->engine->max_batch();
}

int Server::bind() {
  auto& o = impl_->opts;
  int port = o.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(o.host);
    BTX_CHECK(port > 0, "cannot listen on {} (any port): the address is not available", o.host);
  } else {
    BTX_CHECK(impl_->http.bind_to_port(o.host, port),
              "cannot listen on {}:{}: the port is in use or the address is not available", o.host,
              port);
  }
  if (o.header_timeout_s > 0) {
    impl_->deadline = std::make_unique<HeaderDeadline>(
        port, std::chrono::milliseconds(static_cast<int64_t>(o.header_timeout_s * 1000)));
  }
  return port;
}

void Server::listen() {
  impl_->http.listen_after_bind();
}

void Server::stop() {
  if (!impl_) return;
  impl_->engine->shutdown();
  impl_->http.stop();
}

}  // namespace btx::serve
