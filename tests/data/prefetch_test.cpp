// The batch prefetcher: the same batches in the same order as making them in place, made ahead
// (at most `depth`), errors surfacing at the batch that failed, and a clean stop mid-way.
#include "btx/data/prefetch.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "btx/util/error.h"

namespace btx {
namespace {

PrefetchedBatch make_batch(int64_t i) {
  PrefetchedBatch b;
  b.tokens = torch::full({2, 3}, i, torch::kLong);
  b.domains = {static_cast<int>(i), static_cast<int>(i) + 1};
  return b;
}

TEST(BatchPrefetcher, SameBatchesInOrderAtEveryDepth) {
  for (size_t depth : {0, 1, 3}) {
    BatchPrefetcher p(make_batch, 5, 12, depth);
    for (int64_t i = 5; i < 12; ++i) {
      const auto b = p.next();
      EXPECT_TRUE(torch::equal(b.tokens, make_batch(i).tokens)) << "depth " << depth << " i " << i;
      EXPECT_EQ(b.domains, make_batch(i).domains);
    }
    EXPECT_THROW(p.next(), Error);
  }
}

TEST(BatchPrefetcher, RunsAheadAtMostDepth) {
  std::atomic<int> made{0};
  BatchPrefetcher p(
      [&](int64_t i) {
        ++made;
        return make_batch(i);
      },
      0, 100, 2);
  for (int k = 0; k < 200 && made.load() < 2; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(made.load(), 2) << "two made before any was asked for, and no more";
  p.next();
  for (int k = 0; k < 200 && made.load() < 3; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(made.load(), 3);
}  // destroyed with 97 batches never made: the thread stops

TEST(BatchPrefetcher, AnErrorSurfacesAtItsBatch) {
  BatchPrefetcher p(
      [](int64_t i) {
        if (i == 2) throw std::runtime_error("shard unreadable at batch 2");
        return make_batch(i);
      },
      0, 5, 3);
  EXPECT_TRUE(torch::equal(p.next().tokens, make_batch(0).tokens));
  EXPECT_TRUE(torch::equal(p.next().tokens, make_batch(1).tokens));
  try {
    p.next();
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "shard unreadable at batch 2");
  }
}

}  // namespace
}  // namespace btx
