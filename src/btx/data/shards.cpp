// Writing token shards (prepare_shards) and reading them back (TokenShard by mmap, ShardSet from
// manifest.json). Only as much text as the budgets need is tokenized: chunks are drawn in seeded
// order and encoded a few at a time, in parallel, appended in draw order (thread-independent).
#include "btx/data/shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "btx/util/error.h"
#include "btx/util/fs.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token shards are read as little-endian");

namespace btx {

namespace {

// Moves `end` back to a UTF-8 character boundary, but never to or before `begin`.
size_t utf8_floor(std::string_view s, size_t begin, size_t end) {
  size_t e = end;
  while (e > begin && e < s.size() && (static_cast<unsigned char>(s[e]) & 0xC0) == 0x80) --e;
  return e > begin ? e : end;
}

void cut_chunks(std::string_view text, size_t begin, size_t end, size_t chunk_bytes,
                std::vector<std::pair<size_t, size_t>>& out) {
  for (size_t p = begin; p < end;) {
    const size_t limit = p + chunk_bytes;
    if (limit >= end) {
      out.emplace_back(p, end);
      break;
    }
    const size_t nl = text.rfind('\n', limit - 1);
    const size_t e =
        (nl != std::string_view::npos && nl >= p) ? nl + 1 : utf8_floor(text, p, limit);
    out.emplace_back(p, e);
    p = e;
  }
}

int split_of_chunk(size_t i) {
  const size_t r = i % kSplitStride;
  return r == 1 ? 1 : r == 2 ? 2 : 0;
}

struct SplitTokens {
  std::vector<int32_t> tokens;
  int64_t chunks = 0;  // chunks used (the last one possibly cut)
};

// Encodes the chunks `ids` (in that order) until `budget` tokens, EOS after each chunk.
SplitTokens fill_split(const DomainText& text, const std::vector<size_t>& ids, int64_t budget,
                       const Tokenizer& tok, int threads) {
  SplitTokens out;
  const size_t batch = static_cast<size_t>(std::max(1, threads)) * 4;
  const auto want = static_cast<size_t>(budget);
  for (size_t next = 0; out.tokens.size() < want && next < ids.size(); next += batch) {
    const size_t n = std::min(batch, ids.size() - next);
    std::vector<std::vector<int32_t>> enc(n);
    const auto work = [&](size_t first, size_t step) {
      for (size_t j = first; j < n; j += step) enc[j] = tok.encode(text.chunk(ids[next + j]));
    };
    const size_t nt = std::min(n, static_cast<size_t>(std::max(1, threads)));
    std::vector<std::thread> pool;
    for (size_t t = 1; t < nt; ++t) pool.emplace_back(work, t, nt);
    work(0, nt);
    for (auto& th : pool) th.join();
    for (size_t j = 0; j < n && out.tokens.size() < want; ++j) {
      out.tokens.insert(out.tokens.end(), enc[j].begin(), enc[j].end());
      out.tokens.push_back(tok.eos_id());
      ++out.chunks;
    }
  }
  if (out.tokens.size() > want) out.tokens.resize(want);
  return out;
}

std::string to_bytes(const std::vector<int32_t>& tokens, TokenDtype dtype) {
  const int w = dtype_bytes(dtype);
  std::string out(tokens.size() * w, '\0');
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto v = static_cast<uint32_t>(tokens[i]);
    for (int k = 0; k < w; ++k) out[i * w + k] = static_cast<char>((v >> (8 * k)) & 0xFF);
  }
  return out;
}

}  // namespace

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

uint64_t derive_seed(uint64_t seed, std::string_view tag, uint64_t n) {
  uint64_t h = mix64(seed);
  for (unsigned char c : tag) h = mix64(h ^ c);
  return mix64(h ^ mix64(n));
}

std::vector<size_t> seeded_permutation(size_t n, uint64_t seed) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  uint64_t state = seed;
  for (size_t i = n; i > 1; --i) {
    state += 0x9E3779B97F4A7C15ULL;
    std::swap(order[i - 1], order[mix64(state) % i]);
  }
  return order;
}

DomainText read_domain_chunks(const CorpusDomain& domain, int64_t chunk_bytes) {
  BTX_CHECK(chunk_bytes >= 64, "chunk_bytes must be >= 64, got {}", chunk_bytes);
  DomainText d;
  d.name = domain.name;
  d.text.reserve(domain.bytes);
  for (const auto& f : domain.files) {
    const size_t begin = d.text.size();
    d.text += read_file(f);
    cut_chunks(d.text, begin, d.text.size(), static_cast<size_t>(chunk_bytes), d.chunks);
  }
  return d;
}

int64_t min_split_tokens(int64_t budget) {
  return std::min(budget, std::max<int64_t>(2048, budget / 20));
}

TokenDtype dtype_from_name(const std::string& name, const fs::path& where) {
  if (name == "uint16") return TokenDtype::kUInt16;
  if (name == "uint32") return TokenDtype::kUInt32;
  fail("{}: unknown token dtype '{}' (expected uint16 or uint32)", where.string(), name);
}
const char* dtype_name(TokenDtype dtype) {
  return dtype == TokenDtype::kUInt16 ? "uint16" : "uint32";
}
int dtype_bytes(TokenDtype dtype) {
  return dtype == TokenDtype::kUInt16 ? 2 : 4;
}

void prepare_shards(const ShardOptions& opts, const Tokenizer& tok) {
  const std::array<int64_t, 3> budgets = {opts.train_tokens, opts.valid_tokens, opts.test_tokens};
  for (size_t s = 0; s < kSplits.size(); ++s) {
    BTX_CHECK(budgets[s] >= 0, "{}_tokens must be >= 0, got {}", kSplits[s], budgets[s]);
  }
  BTX_CHECK(tok.eos_id() >= 0,
            "the tokenizer has no end-of-text token (eos) to put between documents; name one as "
            "eos_token in the tokenizer_config.json beside tokenizer.json");
  const auto domains = select_domains(list_corpus(opts.corpus), opts.domains, opts.corpus);
  const TokenDtype dtype = tok.vocab_size() <= 65536 ? TokenDtype::kUInt16 : TokenDtype::kUInt32;

  nlohmann::json manifest = {
      {"format_version", kShardFormatVersion},
      {"dtype", dtype_name(dtype)},
      {"vocab_size", tok.vocab_size()},
      {"eos_id", tok.eos_id()},
      {"tokenizer_sha256", tok.sha256()},
      {"seed", opts.seed},
      {"chunk_bytes", opts.chunk_bytes},
      {"split_rule", fmt::format("chunk i: i % {0} == 1 -> valid, i % {0} == 2 -> test, else train",
                                 kSplitStride)},
      {"budgets",
       {{"train", opts.train_tokens}, {"valid", opts.valid_tokens}, {"test", opts.test_tokens}}},
      {"domains", nlohmann::json::object()},
  };

  write_dir_atomic(opts.out, [&](const fs::path& tmp) {
    for (const auto& dom : domains) {
      const DomainText text = read_domain_chunks(dom, opts.chunk_bytes);
      std::array<std::vector<size_t>, 3> split_chunks;
      for (size_t i = 0; i < text.chunks.size(); ++i) split_chunks[split_of_chunk(i)].push_back(i);
      nlohmann::json entry = {{"source_bytes", dom.bytes}, {"source_chunks", text.chunks.size()}};
      fs::create_directories(tmp / dom.name);
      for (size_t s = 0; s < kSplits.size(); ++s) {
        const std::string split = kSplits[s];
        const auto& pool = split_chunks[s];
        const auto order = seeded_permutation(
            pool.size(), derive_seed(opts.seed, "shards/" + dom.name + "/" + split));
        std::vector<size_t> ids(order.size());
        for (size_t k = 0; k < order.size(); ++k) ids[k] = pool[order[k]];
        const SplitTokens got = fill_split(text, ids, budgets[s], tok, opts.threads);
        const auto n = static_cast<int64_t>(got.tokens.size());
        const int64_t need = min_split_tokens(budgets[s]);
        BTX_CHECK(n >= need,
                  "domain '{}' is too small for the chosen split: {} tokens for {}, need >= {} "
                  "({} bytes in {} chunks of ~{} bytes, {} of them for {}); lower {}_tokens{}, "
                  "or leave the domain out",
                  dom.name, n, split, need, dom.bytes, text.chunks.size(), opts.chunk_bytes,
                  pool.size(), split, split, s == 0 ? "" : " or chunk_bytes");
        const std::string bytes = to_bytes(got.tokens, dtype);
        write_file_atomic(tmp / dom.name / (split + ".bin"), bytes);
        entry[split] = {{"tokens", n},
                        {"sha256", sha256_hex(bytes)},
                        {"chunks", got.chunks},
                        {"available_chunks", pool.size()}};
      }
      manifest["domains"][dom.name] = std::move(entry);
    }
    write_file_atomic(tmp / "manifest.json", manifest.dump(2) + "\n");
  });
}

TokenShard::TokenShard(const fs::path& file, TokenDtype dtype) : path_(file), dtype_(dtype) {
  const int fd = ::open(file.c_str(), O_RDONLY);
  BTX_CHECK(fd >= 0, "cannot open token shard {}: {}", file.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("cannot stat token shard {}: {}", file.string(), std::strerror(err));
  }
  const auto bytes = static_cast<size_t>(st.st_size);
  const int w = dtype_bytes(dtype);
  if (bytes % w != 0) {
    ::close(fd);
    fail("token shard {} has {} bytes, not a multiple of {} ({}): truncated or wrong dtype",
         file.string(), bytes, w, dtype_name(dtype));
  }
  size_ = static_cast<int64_t>(bytes / w);
  if (bytes > 0) {
    void* p = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    BTX_CHECK(p != MAP_FAILED, "cannot mmap token shard {}: {}", file.string(), std::strerror(err));
    map_ = p;
    map_bytes_ = bytes;
  } else {
    ::close(fd);
  }
}

TokenShard::~TokenShard() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
}

int64_t TokenShard::at(int64_t i) const {
  int64_t v = 0;
  read(i, 1, &v);
  return v;
}

void TokenShard::read(int64_t offset, int64_t n, int64_t* out) const {
  BTX_CHECK(offset >= 0 && n >= 0 && offset + n <= size_,
            "token shard {}: range [{}, {}) is outside its {} tokens", path_.string(), offset,
            offset + n, size_);
  if (dtype_ == TokenDtype::kUInt16) {
    const auto* p = static_cast<const uint16_t*>(map_) + offset;
    for (int64_t i = 0; i < n; ++i) out[i] = p[i];
  } else {
    const auto* p = static_cast<const uint32_t*>(map_) + offset;
    for (int64_t i = 0; i < n; ++i) out[i] = p[i];
  }
}

torch::Tensor TokenShard::slice(int64_t offset, int64_t n) const {
  BTX_CHECK(n >= 0, "token shard {}: negative slice length {}", path_.string(), n);
  torch::Tensor t = torch::empty({n}, torch::kLong);  // [n]
  read(offset, n, t.data_ptr<int64_t>());
  return t;
}

ShardSet ShardSet::open(const fs::path& data_dir) {
  const fs::path mpath = data_dir / "manifest.json";
  BTX_CHECK(fs::is_regular_file(mpath),
            "no token shards in {}: {} is missing (prepare them with `btx data prepare`)",
            data_dir.string(), mpath.string());
  ShardSet set;
  set.dir_ = data_dir;
  try {
    set.manifest_ = nlohmann::json::parse(read_file(mpath));
  } catch (const nlohmann::json::exception& e) {
    fail("{} is not valid JSON: {}", mpath.string(), e.what());
  }
  const auto& m = set.manifest_;
  try {
    BTX_CHECK(m.is_object() && m.contains("format_version") && m["format_version"].is_number(),
              "{} has no format_version: not a btx shard manifest", mpath.string());
    const int version = m["format_version"].get<int>();
    BTX_CHECK(version <= kShardFormatVersion,
              "{} was written by a newer btx (format {} > {}); update btx or prepare the data "
              "again",
              mpath.string(), version, kShardFormatVersion);
    BTX_CHECK(version >= 1, "{}: invalid format_version {}", mpath.string(), version);
    const TokenDtype dtype = dtype_from_name(m.at("dtype").get<std::string>(), mpath);
    BTX_CHECK(m.at("vocab_size").get<int>() > 0, "{}: vocab_size must be > 0", mpath.string());
    BTX_CHECK(m.at("domains").is_object() && !m["domains"].empty(), "{} lists no domains",
              mpath.string());
    for (const auto& [name, entry] : m["domains"].items()) {
      for (const char* split : kSplits) {
        BTX_CHECK(entry.contains(split), "{}: domain '{}' has no '{}' entry", mpath.string(), name,
                  split);
        const auto tokens = entry[split].at("tokens").get<int64_t>();
        const fs::path file = data_dir / name / (std::string(split) + ".bin");
        BTX_CHECK(fs::is_regular_file(file), "token shard {} is missing (listed in {})",
                  file.string(), mpath.string());
        auto shard = std::make_shared<const TokenShard>(file, dtype);
        BTX_CHECK(shard->size() == tokens,
                  "token shard {} holds {} tokens but {} says {}: the data folder is damaged; "
                  "prepare it again",
                  file.string(), shard->size(), mpath.string(), tokens);
        set.shards_[name][split] = std::move(shard);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{} is malformed: {}", mpath.string(), e.what());
  }
  return set;
}

std::vector<std::string> ShardSet::domains() const {
  std::vector<std::string> out;
  for (const auto& [name, splits] : shards_) out.push_back(name);
  return out;
}

std::shared_ptr<const TokenShard> ShardSet::shard_ptr(const std::string& domain,
                                                      const std::string& split) const {
  auto it = shards_.find(domain);
  if (it == shards_.end()) {
    fail("domain '{}' has no token shards in {} (it has: {})", domain, dir_.string(),
         fmt::join(domains(), ", "));
  }
  auto sit = it->second.find(split);
  BTX_CHECK(sit != it->second.end(), "unknown split '{}' (expected train, valid or test)", split);
  return sit->second;
}

const TokenShard& ShardSet::shard(const std::string& domain, const std::string& split) const {
  return *shard_ptr(domain, split);
}

void ShardSet::check_tokenizer(const Tokenizer& tokenizer) const {
  const std::string want = manifest_.value("tokenizer_sha256", "");
  BTX_CHECK(want == tokenizer.sha256(),
            "the token shards in {} were made with another tokenizer (sha256 {}) than {} "
            "(sha256 {}); prepare the data again",
            dir_.string(), want, tokenizer.path().string(), tokenizer.sha256());
}

bool ShardSet::verify_checksums(std::vector<fs::path>* bad) const {
  bool ok = true;
  for (const auto& [name, splits] : shards_) {
    for (const auto& [split, shard] : splits) {
      const auto& want = manifest_["domains"][name][split]["sha256"];
      if (want.is_string() && sha256_file(shard->path()) == want.get<std::string>()) continue;
      ok = false;
      if (bad != nullptr) bad->push_back(shard->path());
    }
  }
  return ok;
}

}  // namespace btx
