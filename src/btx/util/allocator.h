// How the process's C allocator treats the memory LibTorch frees. A training step allocates and
// frees the same large CPU tensors (activations, logits, gradients: up to tens of MB each) every
// step. glibc's malloc by default gives freed memory at the top of its heap back to the kernel
// (above M_TRIM_THRESHOLD, 128 kB at start) and serves big blocks with mmap, so the next step
// faults the same pages in again, zeroed by the kernel, one 4 kB page at a time. Measured
// (docs/benchmarks.md, "The allocator"): a tiny study counted 151M minor page faults and 476 s of
// system time against 1557 s of user time; keeping freed memory made the tiny model's fp32 step
// 1.17x faster side by side (bf16 autocast: no gain). glibc will not raise its mmap threshold
// above 32 MB, and the tiny model's logits are exactly 32 MB (2048 x 4096 floats, plus
// LibTorch's alignment): with the threshold alone they and their gradients were still mapped and
// unmapped every step (73M faults and 626 s of system time in a 2026-12-03 study), so btx turns
// mmap off altogether. The cost is memory: the heap stays at its peak (the peak is what a step
// needs anyway).
#pragma once

namespace btx {

enum class FreedMemory {
  kGlibcDefaults,  // glibc as it starts (benchmarks only)
  kUpTo32MB,       // trim threshold 2 GB, blocks up to 32 MB from the heap, larger ones mmapped
  kAlways,         // the same, and no block mmapped: every size from the heap (btx's choice)
};

// Keeps freed memory in the process as `mode` says. Call once at the start of main; a no-op
// where the C library is not glibc.
void keep_freed_memory(FreedMemory mode = FreedMemory::kAlways);
}  // namespace btx
