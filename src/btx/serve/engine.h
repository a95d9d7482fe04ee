// The serving engine: one thread runs the model for the requests of a bounded queue, in arrival
// order; with a batch decoder up to max_batch of them are decoded together (continuous
// batching), otherwise one at a time. It knows nothing of HTTP: server.cpp submits jobs and
// waits on them. A job's text is handed over as it becomes final; a cancelled job stops at
// its next token.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "btx/data/tokenizer.h"
#include "btx/generate/generate.h"
#include "btx/serve/completions.h"

namespace btx::serve {

using Clock = std::chrono::steady_clock;

struct EngineOptions {
  size_t queue = 16;          // jobs that may wait while others run; submit() refuses more
  size_t max_batch = 8;       // jobs decoded together (1: one at a time)
  size_t prefill_rows = 0;    // prompts of joining jobs read in one forward (0: max_batch)
  double token_delay_ms = 0;  // slept before every decoding step: a slow model, for testing
};

// One request on its way through the engine. The engine thread writes the text as it becomes
// final and the result; the HTTP thread waits on `cv` and reads them.
struct Job {
  std::vector<int32_t> prompt;
  GenerateOptions options;
  int64_t score_prompt = -1;  // >= 0: the prompt's log-probabilities too, with this top-N
  std::vector<TokenLogprob> prompt_logprobs;
  std::atomic<bool> cancel{false};  // set by the HTTP side when the client has gone
  // The HTTP side's probe of its client: true once it has left, though no one has noticed yet
  // (null: never). The engine asks it when a slot is wanted: admission with the queue full, and
  // a job about to start, so departed clients neither hold slots nor take a batch row.
  std::function<bool()> gone;
  bool abandoned() const { return cancel || (gone && gone()); }
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
  Engine(Decoder& decoder, const Tokenizer& tok, const EngineOptions& o)
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

  // False (and nothing queued) when the queue is full of live jobs or the engine is stopping.
  // Queued jobs whose client has left (cancelled, or found gone now) give their slots back first.
  bool submit(const std::shared_ptr<Job>& job);

  // The client of `jobs` has left: the queued ones leave the queue now (finished as cancelled),
  // the running ones stop at their next token.
  void withdraw(const std::vector<std::shared_ptr<Job>>& jobs);

  // Cancels the running jobs, fails the queued ones and joins the engine thread.
  void shutdown();

  bool stopping() const;
  // The queue's and the batch's counters, for /health.
  nlohmann::json stats();

 private:
  // Waits for queued jobs and moves up to `room` of them to the running set. Empty when
  // stopping.
  std::vector<std::shared_ptr<Job>> take_jobs(size_t room, bool wait);

  // The generation of a job, its text streamed into the job as it becomes final.
  std::unique_ptr<Generation> start(const std::shared_ptr<Job>& job);
  void serial_loop();
  void batch_loop();
  void delay() const;

  void complete(const std::shared_ptr<Job>& job, const GenerateResult& r,
                const nlohmann::json& state, Clock::time_point t0);

  void fail(const std::shared_ptr<Job>& job, const std::string& error);

  // Drops a job from the running set (m_ held).
  void release(const Job& job);
  // Moves the queued jobs that are cancelled (and, with `probe`, those whose client is found gone)
  // out of the queue into `out`, counting them (m_ held).
  void drop_abandoned(bool probe, std::vector<std::shared_ptr<Job>>& out);
  // Finishes jobs dropped from the queue as cancelled (m_ not held).
  static void finish_cancelled(const std::vector<std::shared_ptr<Job>>& jobs);

  static void finish(Job& job, const GenerateResult& r, const std::string& error);

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

}  // namespace btx::serve
