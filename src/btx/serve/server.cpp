#include "btx/serve/server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

namespace btx::serve {

namespace {

using Clock = std::chrono::steady_clock;

// One request on its way through the engine. The engine thread writes the text as it becomes
// final and the result; the HTTP thread waits on `cv` and reads them.
struct Job {
  CompletionRequest req;
  std::atomic<bool> cancel{false};  // set by the HTTP side when the client has gone
  std::mutex m;
  std::condition_variable cv;
  std::string pending;  // streamed text not written to the client yet
  bool done = false;
  GenerateResult result;
  nlohmann::json state;  // the decoder's state after the generation (ensemble posterior)
  std::string error;     // set when the generation failed
};

// Runs the model on one thread for the jobs of a bounded queue, in arrival order. With a batch
// decoder, up to `max_batch` jobs are decoded together (continuous batching: a job joins at the
// next step and leaves when it ends); otherwise one at a time.
class Engine {
 public:
  // The queue holds o.queue jobs; o.token_delay_ms is slept before every decoding step (a slow
  // model, for testing clients).
  Engine(Decoder& decoder, const Tokenizer& tok, const ServeOptions& o)
      : decoder_(decoder),
        tok_(tok),
        capacity_(o.queue),
        delay_ms_(o.token_delay_ms),
        batch_(o.max_batch > 1 ? decoder.batch_decoder() : nullptr),
        max_batch_(batch_ ? o.max_batch : 1),
        prefill_rows_(o.prefill_rows == 0 ? max_batch_ : o.prefill_rows),
        worker_([this] { batch_ ? batch_loop() : serial_loop(); }) {}
  ~Engine() { shutdown(); }

  size_t max_batch() const { return max_batch_; }

  // False (and nothing queued) when the queue is full or the engine is stopping.
  bool submit(const std::shared_ptr<Job>& job) {
    {
      std::lock_guard<std::mutex> lock(m_);
      if (stopping_ || queue_.size() >= capacity_) {
        ++rejected_;
        return false;
      }
      queue_.push_back(job);
    }
    cv_.notify_one();
    return true;
  }

  // Cancels the running jobs, fails the queued ones and joins the engine thread.
  void shutdown() {
    std::deque<std::shared_ptr<Job>> left;
    {
      std::lock_guard<std::mutex> lock(m_);
      if (stopping_) return;
      stopping_ = true;
      left.swap(queue_);
      for (auto& job : running_) job->cancel = true;
    }
    cv_.notify_all();
    for (auto& job : left) finish(*job, {}, "the server is shutting down");
    if (worker_.joinable()) worker_.join();
  }

  bool stopping() const {
    std::lock_guard<std::mutex> lock(m_);
    return stopping_;
  }

  nlohmann::json stats() const {
    std::lock_guard<std::mutex> lock(m_);
    return {{"queued", queue_.size()},
            {"queue_limit", capacity_},
            {"running", running_.size()},
            {"batch_limit", max_batch_},
            {"prefill_rows", prefill_rows_},
            {"peak_running", peak_running_},
            {"completed", completed_},
            {"cancelled", cancelled_},
            {"rejected", rejected_},
            {"failed", failed_},
            {"generated_tokens", generated_tokens_}};
  }

 private:
  // Waits for queued jobs and moves up to `room` of them to the running set. Empty when
  // stopping.
  std::vector<std::shared_ptr<Job>> take_jobs(size_t room, bool wait) {
    std::unique_lock<std::mutex> lock(m_);
    if (wait) cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    std::vector<std::shared_ptr<Job>> out;
    while (!stopping_ && out.size() < room && !queue_.empty()) {
      out.push_back(queue_.front());
      queue_.pop_front();
      running_.push_back(out.back());
    }
    peak_running_ = std::max(peak_running_, running_.size());
    return out;
  }

  // The generation of a job, its text streamed into the job as it becomes final.
  std::unique_ptr<Generation> start(const std::shared_ptr<Job>& job) {
    GenerateOptions o = job->req.options;
    o.cancel = &job->cancel;
    Job* j = job.get();
    return std::make_unique<Generation>(tok_, job->req.prompt, o, decoder_.context(),
                                        [j](const std::string& t) {
                                          {
                                            std::lock_guard<std::mutex> lock(j->m);
                                            j->pending += t;
                                          }
                                          j->cv.notify_all();
                                        });
  }

  void serial_loop() {
    for (;;) {
      auto jobs = take_jobs(1, /*wait=*/true);
      if (jobs.empty()) return;
      auto& job = jobs[0];
      const auto t0 = Clock::now();
      try {
        auto g = start(job);
        decoder_.reset();
        while (g->wants_more()) {
          delay();
          g->take(decoder_.next_scores(g->sequence()));
        }
        complete(job, g->finish(), decoder_.state(), t0);
      } catch (const std::exception& e) {
        fail(job, e.what());
      }
    }
  }

  void batch_loop() {
    struct Row {
      std::shared_ptr<Job> job;
      std::unique_ptr<Generation> gen;
      Clock::time_point t0;
    };
    std::vector<Row> rows;  // in the batch decoder's row order
    for (;;) {
      // New jobs join: their prompts are read together (one forward per `prefill_rows_` of
      // them, the shorter prompts left-padded), their first tokens chosen.
      std::vector<Row> joining;
      for (auto& job : take_jobs(max_batch_ - rows.size(), /*wait=*/rows.empty())) {
        const auto t0 = Clock::now();
        try {
          auto g = start(job);
          if (!g->wants_more()) {  // max_tokens 0, or cancelled while queued
            complete(job, g->finish(), nullptr, t0);
            continue;
          }
          joining.push_back({job, std::move(g), t0});
        } catch (const std::exception& e) {
          fail(job, e.what());
        }
      }
      for (size_t first = 0; first < joining.size(); first += prefill_rows_) {
        const size_t n = std::min(prefill_rows_, joining.size() - first);
        std::vector<std::vector<int32_t>> prompts;
        for (size_t r = 0; r < n; ++r) prompts.push_back(joining[first + r].job->req.prompt);
        try {
          delay();
          const auto scores = batch_->add_rows(prompts);
          for (size_t r = 0; r < n; ++r) {
            joining[first + r].gen->take(scores[static_cast<int64_t>(r)]);
            rows.push_back(std::move(joining[first + r]));
          }
        } catch (const std::exception& e) {
          // The prompts are checked before any forward, so the running rows stay as they were.
          for (size_t r = 0; r < n; ++r) fail(joining[first + r].job, e.what());
        }
      }
      if (rows.empty()) {
        if (stopping()) return;
        continue;
      }
      // Finished rows leave.
      std::vector<int64_t> keep;
      std::vector<Row> kept;
      for (size_t r = 0; r < rows.size(); ++r) {
        if (rows[r].gen->wants_more()) {
          keep.push_back(static_cast<int64_t>(r));
          kept.push_back(std::move(rows[r]));
        } else {
          complete(rows[r].job, rows[r].gen->finish(), batch_->row_state(static_cast<int64_t>(r)),
                   rows[r].t0);
        }
      }
      if (keep.size() != rows.size()) batch_->keep(keep);
      rows = std::move(kept);
      if (rows.empty()) continue;
      // One step for every row.
      try {
        std::vector<int32_t> last;
        for (auto& row : rows) last.push_back(row.gen->sequence().back());
        delay();
        const auto scores = batch_->step(last);
        for (size_t r = 0; r < rows.size(); ++r) {
          rows[r].gen->take(scores[static_cast<int64_t>(r)]);
        }
      } catch (const std::exception& e) {
        for (auto& row : rows) fail(row.job, e.what());
        rows.clear();
        batch_->keep({});
      }
    }
  }

  void delay() const {
    if (delay_ms_ > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(delay_ms_));
    }
  }

  void complete(const std::shared_ptr<Job>& job, const GenerateResult& r,
                const nlohmann::json& state, Clock::time_point t0) {
    spdlog::info("completion: {} prompt tokens, {} generated, finish {}, {:.3f} s",
                 job->req.prompt.size(), r.tokens.size(), r.finish_reason,
                 std::chrono::duration<double>(Clock::now() - t0).count());
    {
      std::lock_guard<std::mutex> lock(m_);
      (r.finish_reason == "cancelled" ? cancelled_ : completed_)++;
      generated_tokens_ += r.tokens.size();
      release(*job);
    }
    {
      std::lock_guard<std::mutex> lock(job->m);
      job->state = state;
    }
    finish(*job, r, "");
  }

  void fail(const std::shared_ptr<Job>& job, const std::string& error) {
    spdlog::error("completion failed: {}", error);
    {
      std::lock_guard<std::mutex> lock(m_);
      ++failed_;
      release(*job);
    }
    finish(*job, {}, error);
  }

  // Drops a job from the running set (m_ held).
  void release(const Job& job) {
    running_.erase(std::remove_if(running_.begin(), running_.end(),
                                  [&](const auto& j) { return j.get() == &job; }),
                   running_.end());
  }

  static void finish(Job& job, const GenerateResult& r, const std::string& error) {
    {
      std::lock_guard<std::mutex> lock(job.m);
      job.result = r;
      job.error = error;
      job.done = true;
    }
    job.cv.notify_all();
  }

  Decoder& decoder_;
  const Tokenizer& tok_;
  const size_t capacity_;
  const double delay_ms_;
  std::unique_ptr<BatchDecoder> batch_;
  const size_t max_batch_;
  const size_t prefill_rows_;  // prompts read in one forward at most
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::shared_ptr<Job>> running_;
  bool stopping_ = false;
  size_t peak_running_ = 0;  // the most jobs decoded at once so far
  size_t completed_ = 0, cancelled_ = 0, rejected_ = 0, failed_ = 0, generated_tokens_ = 0;
  std::thread worker_;  // last: it starts once the members above exist
};

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
    engine = std::make_unique<Engine>(*decoder, tok, opts);
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
