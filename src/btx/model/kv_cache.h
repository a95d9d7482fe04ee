// The KV cache of incremental decoding: per layer, the keys and values of the positions read so
// far (and what the FFN keeps of them), so that each new token costs one position's work instead
// of the whole prefix; and continuous batching over it: sequences of different lengths share one
// left-padded cache, join a running batch and leave it as they finish.
// Shapes: B rows, G key/value heads, S cached slots, D head dim.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace btx {

// One layer's cache.
struct LayerCache {
  torch::Tensor k, v;  // (B, G, S, D) each; undefined while empty
  // What the FFN keeps of earlier positions (FeedForwardImpl::forward_cached), one row per
  // sequence; undefined for FFNs that keep nothing (SMEAR's prefix router: its running sum).
  torch::Tensor ffn;
};

struct KVCache {
  std::vector<LayerCache> layers;  // one per decoder layer
  int64_t length = 0;              // S: the slots each row holds, padding included
  // A batch of sequences of different lengths is left-padded: the first pad[b] slots of row b
  // hold no token and are masked out, and row b's next position is length - pad[b]. (B) int64;
  // undefined when no row is padded. Set on an empty cache, it reads prompts of different
  // lengths in one forward: row b's ids start with pad[b] padding tokens.
  torch::Tensor pad;
};

// Appends the rows of `other` to `batch` (caches of the same model), left-padding the shorter.
void kv_append_rows(KVCache& batch, const KVCache& other);
// Keeps the rows `rows`, in that order, and drops leading slots that every row has as padding.
void kv_keep_rows(KVCache& batch, const std::vector<int64_t>& rows);
int64_t kv_rows(const KVCache& cache);  // B (0 for an empty cache)

}  // namespace btx
