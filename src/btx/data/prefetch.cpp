#include "btx/data/prefetch.h"

#include "btx/util/error.h"

namespace btx {

BatchPrefetcher::BatchPrefetcher(Make make, int64_t first, int64_t end, size_t depth)
    : make_(std::move(make)), first_(first), end_(end), next_(first), depth_(depth) {
  if (depth_ > 0 && first < end) worker_ = std::thread([this] { run(); });
}

BatchPrefetcher::~BatchPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void BatchPrefetcher::run() {
  for (int64_t i = first_; i < end_; ++i) {
    {
      std::unique_lock<std::mutex> lock(m_);
      cv_.wait(lock, [&] { return stop_ || ready_.size() < depth_; });
      if (stop_) return;
    }
    PrefetchedBatch b;
    try {
      b = make_(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(m_);
      error_ = std::current_exception();
      cv_.notify_all();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(m_);
      ready_.push_back(std::move(b));
    }
    cv_.notify_all();
  }
}

PrefetchedBatch BatchPrefetcher::next() {
  BTX_CHECK(next_ < end_, "batch prefetcher: no batch after index {}", end_ - 1);
  const int64_t i = next_++;
  if (depth_ == 0) return make_(i);
  std::unique_lock<std::mutex> lock(m_);
  cv_.wait(lock, [&] { return !ready_.empty() || error_; });
  if (ready_.empty()) std::rethrow_exception(error_);  // the batches before it came first
  PrefetchedBatch b = std::move(ready_.front());
  ready_.pop_front();
  lock.unlock();
  cv_.notify_all();
  return b;
}

}  // namespace btx
