#include "btx/model/kv_cache.h"

#include <algorithm>

namespace btx {

int64_t kv_rows(const KVCache& cache) {
  return cache.layers.empty() || !cache.layers[0].k.defined() ? 0 : cache.layers[0].k.size(0);
}

namespace {
// `t` (B, G, S, D) with `n` empty slots in front.
torch::Tensor left_pad(const torch::Tensor& t, int64_t n) {
  if (n == 0) return t;
  auto sizes = t.sizes().vec();
  sizes[2] = n;
  return torch::cat({torch::zeros(sizes, t.options()), t}, 2);
}
torch::Tensor pads_of(const KVCache& c) {
  return c.pad.defined() ? c.pad : torch::zeros({kv_rows(c)}, torch::kInt64);
}
// No padding left: back to the unpadded form (the plain causal mask, shared positions).
void drop_zero_pad(KVCache& c) {
  if (c.pad.defined() && c.pad.max().item<int64_t>() == 0) c.pad = torch::Tensor();
}
}  // namespace

void kv_append_rows(KVCache& batch, const KVCache& other) {
  if (kv_rows(other) == 0) return;
  if (kv_rows(batch) == 0) {
    batch = other;
    return;
  }
  TORCH_CHECK(batch.layers.size() == other.layers.size(), "KV caches of different models (",
              batch.layers.size(), " and ", other.layers.size(), " layers)");
  const int64_t S = std::max(batch.length, other.length);
  const int64_t grow_batch = S - batch.length, grow_other = S - other.length;
  auto pad = torch::cat({pads_of(batch) + grow_batch, pads_of(other) + grow_other});
  for (size_t l = 0; l < batch.layers.size(); ++l) {
    auto& mine = batch.layers[l];
    const auto& theirs = other.layers[l];
    mine.k = torch::cat({left_pad(mine.k, grow_batch), left_pad(theirs.k, grow_other)});
    mine.v = torch::cat({left_pad(mine.v, grow_batch), left_pad(theirs.v, grow_other)});
    if (mine.ffn.defined()) mine.ffn = torch::cat({mine.ffn, theirs.ffn});
  }
  batch.pad = pad;
  batch.length = S;
  drop_zero_pad(batch);
}

void kv_keep_rows(KVCache& batch, const std::vector<int64_t>& rows) {
  if (rows.empty()) {
    batch = KVCache{};
    return;
  }
  auto index = torch::tensor(rows, torch::kInt64);
  auto pad = pads_of(batch).index_select(0, index);
  const int64_t drop = pad.min().item<int64_t>();  // slots that are padding in every kept row
  auto kept = [&](const torch::Tensor& t) {        // (B, G, S, D): the rows kept, from slot `drop`
    return t.index_select(0, index.to(t.device()))
        .narrow(2, drop, batch.length - drop)
        .contiguous();
  };
  for (auto& layer : batch.layers) {
    layer.k = kept(layer.k);
    layer.v = kept(layer.v);
    if (layer.ffn.defined()) layer.ffn = layer.ffn.index_select(0, index.to(layer.ffn.device()));
  }
  batch.pad = pad - drop;
  batch.length -= drop;
  drop_zero_pad(batch);
}

}  // namespace btx
