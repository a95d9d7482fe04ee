// A small tokenizer for tests: trained with Debian's spm_train on a test corpus folder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>

#include "btx/data/tokenizer.h"

namespace btx::testing {

// Trains a `vocab`-piece tokenizer on `corpus` (reading up to `sample_bytes` of each domain)
// into `out`, and returns `out`.
inline std::filesystem::path train_test_tokenizer(const std::filesystem::path& corpus,
                                                  const std::filesystem::path& out, int64_t vocab,
                                                  size_t sample_bytes) {
  TokenizerTrainOptions t;
  t.corpus = corpus;
  t.out_model = out;
  t.vocab_size = vocab;
  t.sample_bytes_per_domain = sample_bytes;
  train_tokenizer(t);
  return out;
}

}  // namespace btx::testing
