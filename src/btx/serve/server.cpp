#include "btx/serve/server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include "btx/serve/engine.h"

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
  void completions(const httplib::Request& req, httplib::Response& res);
  void stream(const std::shared_ptr<Job>& job, const CompletionIds& ids, httplib::Response& res);

  CompletionIds next_ids() {
    return {fmt::format("cmpl-{:x}{:06d}", started, ++request_count), unix_now(), opts.model_id};
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
  httplib::Server http;
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
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    nlohmann::json body = engine->stats();
    body["model"] = opts.model_id;
    body["status"] = engine->stopping() ? "stopping" : "ok";
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
  http.Post("/v1/completions",
            [this](const httplib::Request& req, httplib::Response& res) { completions(req, res); });
  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler's own JSON error
    if (res.status == 404) {
      send_error(res, 404,
                 fmt::format("no route for {} {} (routes: POST /v1/completions, GET /v1/models, "
                             "GET /health)",
                             req.method, req.path),
                 "invalid_request_error");
    } else if (res.status == 413) {
      send_error(res, 413,
                 fmt::format("the request body is larger than this server's limit of {} bytes",
                             opts.limits.max_body_bytes),
                 "invalid_request_error");
    } else {
      send_error(res, res.status, fmt::format("HTTP {}", res.status), "invalid_request_error");
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

void Server::Impl::completions(const httplib::Request& req, httplib::Response& res) {
  auto job = std::make_shared<Job>();
  try {
    job->req = parse_completion_request(req.body, tok, served, opts.limits, next_seed());
  } catch (const RequestError& e) {
    send_error(res, e.status, e.what(), e.type, e.param);
    return;
  }
  if (!engine->submit(job)) {
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
  const CompletionIds ids = next_ids();
  if (job->req.stream) {
    stream(job, ids, res);
    return;
  }
  std::unique_lock<std::mutex> lock(job->m);
  job->cv.wait(lock, [&] { return job->done; });
  if (!job->error.empty()) {
    send_error(res, 500, job->error, "server_error");
    return;
  }
  send_json(res, 200, completion_response(ids, job->result, job->req.prompt.size(), job->state));
}

void Server::Impl::stream(const std::shared_ptr<Job>& job, const CompletionIds& ids,
                          httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto provider = [job, ids](size_t /*offset*/, httplib::DataSink& sink) {
    // A failed write means the client has gone: stop the generation.
    auto write = [&](const std::string& s) {
      if (sink.write(s.data(), s.size())) return true;
      job->cancel = true;
      return false;
    };
    std::string text;
    bool done = false;
    {
      std::unique_lock<std::mutex> lock(job->m);
      job->cv.wait_for(lock, std::chrono::seconds(1),
                       [&] { return job->done || !job->pending.empty(); });
      text.swap(job->pending);
      done = job->done;
    }
    if (!text.empty() && !write(sse_event(completion_chunk(ids, text, nullptr)))) return false;
    // While waiting (queued, or a slow token) an SSE comment keeps the connection alive and
    // shows whether the client is still there.
    if (text.empty() && !done && !write(": waiting\n\n")) return false;
    if (!done) return true;
    if (!job->error.empty()) {
      if (!write(sse_event(error_body(job->error, "server_error")))) return false;
    } else {
      auto last = completion_chunk(ids, "", openai_finish_reason(job->result.finish_reason));
      if (!job->state.is_null()) last["btx"] = job->state;
      if (!write(sse_event(last))) return false;
      if (job->req.include_usage) {
        nlohmann::json u = completion_chunk(ids, "", nullptr);
        u["choices"] = nlohmann::json::array();
        u["usage"] = usage(job->req.prompt.size(), job->result.tokens.size());
        if (!write(sse_event(u))) return false;
      }
    }
    if (!write("data: [DONE]\n\n")) return false;
    sink.done();
    return true;
  };
  res.set_chunked_content_provider("text/event-stream", provider, [job](bool success) {
    if (!success) job->cancel = true;
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
