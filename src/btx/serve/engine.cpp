#include "btx/serve/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace btx::serve {

bool Engine::submit(const std::shared_ptr<Job>& job) {
  std::vector<std::shared_ptr<Job>> withdrawn;
  bool taken = false;
  {
    std::lock_guard<std::mutex> lock(m_);
    // Jobs whose client left give their slot back now, not when the worker reaches them; with
    // the queue full, every queued client is asked, so that admission counts live ones only.
    drop_abandoned(/*probe=*/queue_.size() >= capacity_, withdrawn);
    if (stopping_ || queue_.size() >= capacity_) {
      ++rejected_;
    } else {
      queue_.push_back(job);
      taken = true;
    }
  }
  finish_cancelled(withdrawn);
  if (taken) cv_.notify_one();
  return taken;
}

void Engine::withdraw(const std::vector<std::shared_ptr<Job>>& jobs) {
  for (auto& j : jobs) j->cancel = true;
  std::vector<std::shared_ptr<Job>> withdrawn;
  {
    std::lock_guard<std::mutex> lock(m_);
    drop_abandoned(/*probe=*/false, withdrawn);
  }
  finish_cancelled(withdrawn);
}

void Engine::drop_abandoned(bool probe, std::vector<std::shared_ptr<Job>>& out) {
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (probe ? (*it)->abandoned() : (*it)->cancel.load()) {
      (*it)->cancel = true;
      out.push_back(*it);
      it = queue_.erase(it);
      ++cancelled_;
    } else {
      ++it;
    }
  }
}

void Engine::finish_cancelled(const std::vector<std::shared_ptr<Job>>& jobs) {
  GenerateResult cancelled;
  cancelled.finish_reason = FinishReason::kCancelled;
  for (auto& j : jobs) finish(*j, cancelled, "");
}

void Engine::shutdown() {
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

bool Engine::stopping() const {
  std::lock_guard<std::mutex> lock(m_);
  return stopping_;
}

nlohmann::json Engine::stats() {
  std::vector<std::shared_ptr<Job>> withdrawn;
  std::unique_lock<std::mutex> lock(m_);
  drop_abandoned(/*probe=*/true, withdrawn);  // the queue's live jobs only
  nlohmann::json out = {{"queued", queue_.size()},
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
  lock.unlock();
  finish_cancelled(withdrawn);
  return out;
}

std::vector<std::shared_ptr<Job>> Engine::take_jobs(size_t room, bool wait) {
  std::unique_lock<std::mutex> lock(m_);
  if (wait) cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
  std::vector<std::shared_ptr<Job>> out, withdrawn;
  while (!stopping_ && out.size() < room && !queue_.empty()) {
    auto job = queue_.front();
    queue_.pop_front();
    if (job->abandoned()) {  // its client left: no batch row for it
      job->cancel = true;
      withdrawn.push_back(job);
      ++cancelled_;
      continue;
    }
    out.push_back(job);
    running_.push_back(job);
  }
  peak_running_ = std::max(peak_running_, running_.size());
  lock.unlock();
  finish_cancelled(withdrawn);
  return out;
}

std::unique_ptr<Generation> Engine::start(const std::shared_ptr<Job>& job) {
  GenerateOptions o = job->options;
  o.cancel = &job->cancel;
  Job* j = job.get();
  if (job->score_prompt >= 0) {  // on this thread, the only one that runs decoder_
    job->prompt_logprobs = score_tokens(decoder_, job->prompt, job->score_prompt);
  }
  return std::make_unique<Generation>(tok_, job->prompt, o, decoder_.context(),
                                      [j](const std::string& t) {
                                        {
                                          std::lock_guard<std::mutex> lock(j->m);
                                          j->pending += t;
                                        }
                                        j->cv.notify_all();
                                      });
}

void Engine::serial_loop() {
  for (;;) {
    auto jobs = take_jobs(1, /*wait=*/true);
    if (jobs.empty()) {  // stopping, or the job taken had been abandoned
      if (stopping()) return;
      continue;
    }
    auto& job = jobs[0];
    const auto t0 = Clock::now();
    try {
      auto g = start(job);
      decoder_.reset();
      auto last_probe = Clock::now();
      while (g->wants_more()) {
        if (job->gone && Clock::now() - last_probe > std::chrono::milliseconds(20)) {
          last_probe = Clock::now();
          if (job->gone()) {  // the client left: noticed before the next token
            job->cancel = true;
            continue;
          }
        }
        delay();
        g->take(decoder_.next_scores(g->sequence()));
      }
      complete(job, g->finish(), decoder_.state(), t0);
    } catch (const std::exception& e) {
      fail(job, e.what());
    }
  }
}

void Engine::batch_loop() {
  struct Row {
    std::shared_ptr<Job> job;
    std::unique_ptr<Generation> gen;
    Clock::time_point t0;
  };
  std::vector<Row> rows;  // in the batch decoder's row order
  Clock::time_point last_probe = Clock::now();
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
      for (size_t r = 0; r < n; ++r) prompts.push_back(joining[first + r].job->prompt);
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
    // Rows whose client has left (asked every 20 ms: a few system calls each) are cancelled
    // now rather than when their HTTP thread next looks; finished rows leave.
    if (Clock::now() - last_probe > std::chrono::milliseconds(20)) {
      for (auto& row : rows) {
        if (row.job->gone && row.job->gone()) row.job->cancel = true;
      }
      last_probe = Clock::now();
    }
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

void Engine::delay() const {
  if (delay_ms_ > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(delay_ms_));
  }
}

void Engine::complete(const std::shared_ptr<Job>& job, const GenerateResult& r,
                      const nlohmann::json& state, Clock::time_point t0) {
  spdlog::info("completion: {} prompt tokens, {} generated, finish {}, {:.3f} s",
               job->prompt.size(), r.tokens.size(), name_of(r.finish_reason),
               std::chrono::duration<double>(Clock::now() - t0).count());
  {
    std::lock_guard<std::mutex> lock(m_);
    (r.finish_reason == FinishReason::kCancelled ? cancelled_ : completed_)++;
    generated_tokens_ += r.tokens.size();
    release(*job);
  }
  {
    std::lock_guard<std::mutex> lock(job->m);
    job->state = state;
  }
  finish(*job, r, "");
}

void Engine::fail(const std::shared_ptr<Job>& job, const std::string& error) {
  spdlog::error("completion failed: {}", error);
  {
    std::lock_guard<std::mutex> lock(m_);
    ++failed_;
    release(*job);
  }
  finish(*job, {}, error);
}

void Engine::release(const Job& job) {
  running_.erase(std::remove_if(running_.begin(), running_.end(),
                                [&](const auto& j) { return j.get() == &job; }),
                 running_.end());
}

void Engine::finish(Job& job, const GenerateResult& r, const std::string& error) {
  {
    std::lock_guard<std::mutex> lock(job.m);
    job.result = r;
    job.error = error;
    job.done = true;
  }
  job.cv.notify_all();
}

}  // namespace btx::serve
