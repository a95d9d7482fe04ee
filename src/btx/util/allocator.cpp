#include "btx/util/allocator.h"

#include <climits>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace btx {

void keep_freed_memory(FreedMemory mode) {
#if defined(__GLIBC__)
  if (mode == FreedMemory::kGlibcDefaults) return;
  // Both: the trim threshold alone measured 1.7x slower than glibc's defaults (its dynamic mmap
  // threshold no longer rises), both together 1.17x faster (docs/benchmarks.md).
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
  // glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MB on 64-bit systems).
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  // Blocks above it, too, from the heap (docs/benchmarks.md, "The allocator, again").
  if (mode == FreedMemory::kAlways) mallopt(M_MMAP_MAX, 0);
#else
  (void)mode;
#endif
}

}  // namespace btx
