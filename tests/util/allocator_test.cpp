// keep_freed_memory(): a block above glibc's largest mmap threshold (32 MB), freed and asked for
// again, is served from the heap without faulting its pages in a second time (the tiny model's
// logits and their gradients, every step). Counted in minor page faults (getrusage), not time.
#include "btx/util/allocator.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdlib>
#include <cstring>

namespace btx {
namespace {

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// Allocates n bytes, writes every page, frees them.
void touch(size_t n) {
  char* p = static_cast<char*>(std::malloc(n));
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, n);
  __asm__ volatile("" : : "r"(p) : "memory");  // the writes happen
  std::free(p);
}

TEST(Allocator, A64MBBlockIsReusedWithoutFaultingItsPagesAgain) {
#if defined(__GLIBC__)
  keep_freed_memory(FreedMemory::kAlways);
  const size_t n = size_t{64} << 20;  // 16384 pages of 4 kB
  touch(n);                           // the heap grows once
  const long before = minor_faults();
  for (int i = 0; i < 3; ++i) touch(n);
  const long faults = minor_faults() - before;
  // mmapped each time, it would fault 3 x 16384 pages; from the heap, (almost) none.
  EXPECT_LT(faults, 1000) << faults << " minor page faults for three reuses of a 64 MB block";
#else
  GTEST_SKIP() << "keep_freed_memory() is a no-op without glibc";
#endif
}

}  // namespace
}  // namespace btx
