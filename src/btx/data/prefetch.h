// Batches made ahead of use on a background thread, so that the next micro-batch is ready (for
// a GPU: already in pinned memory) when the current step ends. The batches are the sampler's
// pure functions of their index, so a prefetched run sees exactly the batches, in the same
// order, that an unprefetched one does.
#pragma once

#include <torch/torch.h>

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace btx {

struct PrefetchedBatch {
  torch::Tensor tokens;      // (B, T+1)
  std::vector<int> domains;  // each row's domain index, when asked for
};

class BatchPrefetcher {
 public:
  using Make = std::function<PrefetchedBatch(int64_t index)>;
  // Makes make(i) for i = first, first + 1, ... < end on its own thread, at most `depth` ahead
  // of next(). With depth 0 nothing runs ahead: next() makes the batch itself.
  BatchPrefetcher(Make make, int64_t first, int64_t end, size_t depth = 2);
  ~BatchPrefetcher();  // stops the thread (batches made ahead are dropped)
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  // The batch of the next index, in order. An exception thrown by make() is rethrown here, by
  // the call that would have returned that batch. Past `end` it is a btx::Error.
  PrefetchedBatch next();

 private:
  void run();

  Make make_;
  const int64_t first_, end_;  // the worker makes [first_, end_)
  int64_t next_;               // the index next() returns (the caller's thread only)
  size_t depth_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<PrefetchedBatch> ready_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread worker_;  // last: it starts once the members above exist
};

}  // namespace btx
