// Token shards: run/data/<domain>/{train,valid,test}.bin (raw little-endian uint16, or uint32 for
// a vocabulary over 65536) and run/data/manifest.json (counts, checksums, tokenizer hash). Each
// domain gets the same token budget per split, drawn from seeded-random chunks of its whole text;
// splits are strided over chunk indices, never the tail of a file. Reading is by mmap.
#pragma once

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "btx/corpus/corpus.h"
#include "btx/data/tokenizer.h"

namespace btx {

namespace fs = std::filesystem;

// One corpus domain's text in memory, cut into chunks of about `chunk_bytes` that end just after
// a newline (a line longer than that is cut at a UTF-8 character boundary). Chunks never span two
// files of a folder domain. Used by shard preparation and the tokenizer's training sample.
struct DomainText {
  std::string name;
  std::string text;                               // all files, concatenated
  std::vector<std::pair<size_t, size_t>> chunks;  // [begin, end) byte ranges into `text`
  std::string_view chunk(size_t i) const {
    return std::string_view(text).substr(chunks[i].first, chunks[i].second - chunks[i].first);
  }
};
DomainText read_domain_chunks(const CorpusDomain& domain, int64_t chunk_bytes);

// 64-bit mixing (splitmix64 finaliser), a seed derived from (seed, tag, n), and a seeded
// permutation (Fisher-Yates): every seeded choice in data/ is a pure function of its inputs,
// identical on every platform (no std:: distributions, whose algorithms vary).
uint64_t mix64(uint64_t x);
uint64_t derive_seed(uint64_t seed, std::string_view tag, uint64_t n = 0);
std::vector<size_t> seeded_permutation(size_t n, uint64_t seed);

inline constexpr std::array<const char*, 3> kSplits = {"train", "valid", "test"};
inline constexpr int kShardFormatVersion = 1;
// Chunk i of a domain goes to valid when i % kSplitStride == 1, to test when == 2, else train.
inline constexpr int kSplitStride = 20;

struct ShardOptions {
  fs::path corpus;                   // corpus folder (see corpus.h)
  std::vector<std::string> domains;  // empty = all domains of the corpus
  fs::path out;                      // run/data; replaced atomically
  int64_t train_tokens = 1'000'000;  // per domain; 0 = leave that split empty
  int64_t valid_tokens = 50'000;
  int64_t test_tokens = 50'000;
  int64_t chunk_bytes = 8192;
  uint64_t seed = 0;
  int threads = 2;  // tokenizer threads; the result does not depend on it
};

// The smallest split a domain may fill without being an error: min(budget, max(2048, budget/20)).
// Below the budget but above this, the split simply holds all the domain has.
int64_t min_split_tokens(int64_t budget);

// Tokenizes each domain's chunks (in a seeded random order per split, EOS after each chunk, the
// last chunk cut to fit) until the split's budget is met. Throws btx::Error naming the domain
// when a split gets fewer than min_split_tokens(budget) tokens.
void prepare_shards(const ShardOptions& opts, const Tokenizer& tokenizer);

enum class TokenDtype { kUInt16, kUInt32 };
TokenDtype dtype_from_name(const std::string& name, const fs::path& where);
const char* dtype_name(TokenDtype dtype);
int dtype_bytes(TokenDtype dtype);

// A read-only, memory-mapped view of one .bin file.
class TokenShard {
 public:
  TokenShard(const fs::path& file, TokenDtype dtype);
  ~TokenShard();
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  int64_t size() const { return size_; }  // in tokens
  int64_t at(int64_t i) const;
  // Copies tokens [offset, offset + n) into `out`; throws btx::Error when out of range.
  void read(int64_t offset, int64_t n, int64_t* out) const;
  torch::Tensor slice(int64_t offset, int64_t n) const;  // [n] int64, a copy
  const fs::path& path() const { return path_; }
  TokenDtype dtype() const { return dtype_; }

 private:
  fs::path path_;
  TokenDtype dtype_;
  int64_t size_ = 0;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
};

// The shards of one run/data folder, validated against its manifest.
class ShardSet {
 public:
  // Throws btx::Error when manifest.json is missing or malformed, written by a newer btx, or a
  // .bin file is missing or its size does not match the manifest's token count.
  static ShardSet open(const fs::path& data_dir);

  std::vector<std::string> domains() const;  // sorted
  bool has(const std::string& domain) const { return shards_.count(domain) > 0; }
  const TokenShard& shard(const std::string& domain, const std::string& split) const;
  std::shared_ptr<const TokenShard> shard_ptr(const std::string& domain,
                                              const std::string& split) const;
  const nlohmann::json& manifest() const { return manifest_; }
  int vocab_size() const { return manifest_.at("vocab_size").get<int>(); }
  const fs::path& dir() const { return dir_; }
  // Throws btx::Error when `tokenizer` is not the one the shards were made with.
  void check_tokenizer(const Tokenizer& tokenizer) const;
  // Re-hashes every file; false (with the paths in `bad`) when one does not match.
  bool verify_checksums(std::vector<fs::path>* bad = nullptr) const;

 private:
  fs::path dir_;
  nlohmann::json manifest_;
  std::map<std::string, std::map<std::string, std::shared_ptr<const TokenShard>>> shards_;
};

}  // namespace btx
