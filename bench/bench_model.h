// The dense model the benchmarks build: SwiGLU width 8/3 of the hidden size, rounded down to a
// multiple of 32 (as bench/py/llama_ref.py does), plain multi-head attention.
#pragma once

#include "btx/model/config.h"

inline btx::ModelConfig bench_model_config(int64_t vocab, int64_t hidden, int64_t layers,
                                           int64_t heads) {
  btx::ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = hidden * 8 / 3 / 32 * 32;
  c.num_hidden_layers = layers;
  c.num_attention_heads = c.num_key_value_heads = heads;
  return c;
}
