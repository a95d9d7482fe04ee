// Small model configs for tests, in one call instead of eight assignments each.
#pragma once

#include "btx/model/config.h"

namespace btx::testing {

inline ModelConfig small_model_config(int64_t vocab, int64_t hidden, int64_t inner, int64_t layers,
                                      int64_t heads, int64_t kv_heads, int64_t context = 256) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inner;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.max_position_embeddings = context;
  return c;
}

}  // namespace btx::testing
