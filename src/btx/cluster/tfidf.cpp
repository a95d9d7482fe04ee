// tf-idf vectors (tfidf.h): term counting runs on a few threads over contiguous ranges of the
// documents and is merged in document order, so the vocabulary and the vectors never depend on
// the thread count. Vectors are assembled directly as a coalesced sparse COO tensor.
#include "btx/cluster/tfidf.h"

#include <algorithm>
#include <cmath>
#include <thread>
#include <unordered_set>

#include "btx/util/error.h"

namespace btx {

namespace {

bool is_word_byte(unsigned char c) {
  return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         c == '_';
}

// Runs `work(begin, end, t)` over `n` items split into `threads` contiguous ranges.
void parallel_ranges(size_t n, int threads, const std::function<void(size_t, size_t, int)>& work) {
  const int nt = static_cast<int>(std::max<size_t>(1, std::min<size_t>(std::max(1, threads), n)));
  std::vector<std::thread> pool;
  for (int t = 1; t < nt; ++t) pool.emplace_back(work, n * t / nt, n * (t + 1) / nt, t);
  work(0, n / nt, 0);
  for (auto& th : pool) th.join();
}

}  // namespace

void for_each_term(std::string_view text, const std::function<void(std::string_view)>& emit) {
  std::string word;
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (is_word_byte(c)) {
      word.clear();
      size_t j = i;
      for (; j < n && is_word_byte(static_cast<unsigned char>(text[j])); ++j) {
        const auto b = static_cast<unsigned char>(text[j]);
        word.push_back(static_cast<char>(b >= 'A' && b <= 'Z' ? b + ('a' - 'A') : b));
      }
      if (word.size() <= kMaxTokenBytes) emit(word);
      i = j;
    } else {
      if (c > ' ' && c < 0x7F) emit(text.substr(i, 1));  // punctuation
      ++i;
    }
  }
}

TfidfVectorizer TfidfVectorizer::fit(const std::vector<std::string_view>& docs,
                                     const TfidfOptions& opts, int threads) {
  BTX_CHECK(opts.features >= 1, "tfidf: features must be >= 1, got {}", opts.features);
  BTX_CHECK(opts.min_df >= 1, "tfidf: min_df must be >= 1, got {}", opts.min_df);
  BTX_CHECK(!docs.empty(), "tfidf: no documents to fit the vocabulary on");
  // Document frequency per term, one map per thread, merged after.
  std::vector<std::unordered_map<std::string, int64_t>> dfs(std::max(1, threads));
  parallel_ranges(docs.size(), threads, [&](size_t begin, size_t end, int t) {
    std::unordered_set<std::string> seen;
    for (size_t d = begin; d < end; ++d) {
      seen.clear();
      for_each_term(docs[d], [&](std::string_view w) { seen.emplace(w); });
      for (const auto& w : seen) ++dfs[t][w];
    }
  });
  for (size_t t = 1; t < dfs.size(); ++t) {
    for (auto& [w, c] : dfs[t]) dfs[0][w] += c;
  }
  std::vector<std::pair<int64_t, std::string>> ranked;
  for (auto& [w, c] : dfs[0]) {
    if (c >= opts.min_df) ranked.emplace_back(c, w);
  }
  BTX_CHECK(!ranked.empty(),
            "tfidf: no term occurs in at least min_df={} of the {} documents; lower --min-df or "
            "give more text",
            opts.min_df, docs.size());
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  if (static_cast<int64_t>(ranked.size()) > opts.features) ranked.resize(opts.features);
  TfidfVectorizer v;
  v.opts_ = opts;
  const double n = static_cast<double>(docs.size());
  for (auto& [c, w] : ranked) {
    v.vocab_.push_back(w);
    v.idf_.push_back(static_cast<float>(std::log((1.0 + n) / (1.0 + static_cast<double>(c))) + 1));
  }
  v.build_index("tfidf fit");
  return v;
}

void TfidfVectorizer::build_index(const std::string& where) {
  index_.clear();
  index_.reserve(vocab_.size());
  for (size_t i = 0; i < vocab_.size(); ++i) {
    BTX_CHECK(index_.emplace(vocab_[i], static_cast<int32_t>(i)).second,
              "{}: term '{}' appears twice in the vocabulary (features {} and {})", where,
              vocab_[i], index_[vocab_[i]], i);
  }
}

torch::Tensor TfidfVectorizer::transform(const std::vector<std::string_view>& docs,
                                         int threads) const {
  const auto F = static_cast<int64_t>(vocab_.size());
  const auto N = static_cast<int64_t>(docs.size());
  // Per document: sorted feature ids and their weights.
  std::vector<std::vector<int32_t>> cols(docs.size());
  std::vector<std::vector<float>> vals(docs.size());
  parallel_ranges(docs.size(), threads, [&](size_t begin, size_t end, int) {
    std::vector<int32_t> counts(static_cast<size_t>(F), 0);
    std::vector<int32_t> touched;
    std::string key;
    for (size_t d = begin; d < end; ++d) {
      touched.clear();
      for_each_term(docs[d], [&](std::string_view w) {
        key.assign(w);
        const auto it = index_.find(key);
        if (it == index_.end()) return;
        if (counts[it->second]++ == 0) touched.push_back(it->second);
      });
      std::sort(touched.begin(), touched.end());
      double norm2 = 0;
      auto& vs = vals[d];
      vs.reserve(touched.size());
      for (int32_t f : touched) {
        const double c = counts[f];
        const double tf = opts_.sublinear_tf ? 1.0 + std::log(c) : c;
        const double w = tf * idf_[f];
        vs.push_back(static_cast<float>(w));
        norm2 += w * w;
        counts[f] = 0;
      }
      const double inv = norm2 > 0 ? 1.0 / std::sqrt(norm2) : 0.0;
      for (auto& x : vs) x = static_cast<float>(x * inv);
      cols[d] = touched;
    }
  });
  int64_t nnz = 0;
  for (const auto& c : cols) nnz += static_cast<int64_t>(c.size());
  auto indices = torch::empty({2, nnz}, torch::kLong);  // (2, nnz): row, column
  auto values = torch::empty({nnz}, torch::kFloat);     // (nnz)
  auto* ip = indices.data_ptr<int64_t>();
  auto* vp = values.data_ptr<float>();
  int64_t k = 0;
  for (int64_t d = 0; d < N; ++d) {
    for (size_t j = 0; j < cols[d].size(); ++j, ++k) {
      ip[k] = d;
      ip[nnz + k] = cols[d][j];
      vp[k] = vals[d][j];
    }
  }
  // Rows ascending, columns ascending within a row: already coalesced.
  return torch::sparse_coo_tensor(indices, values, {N, F})._coalesced_(true);  // (N, F)
}

nlohmann::json TfidfVectorizer::to_json() const {
  return {{"features", opts_.features},
          {"min_df", opts_.min_df},
          {"sublinear_tf", opts_.sublinear_tf},
          {"vocab", vocab_}};
}

TfidfVectorizer TfidfVectorizer::from_json(const nlohmann::json& j, const torch::Tensor& idf,
                                           const std::string& where) {
  TfidfVectorizer v;
  try {
    v.opts_.features = j.at("features").get<int64_t>();
    v.opts_.min_df = j.at("min_df").get<int64_t>();
    v.opts_.sublinear_tf = j.at("sublinear_tf").get<bool>();
    v.vocab_ = j.at("vocab").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed tfidf settings ({})", where, e.what());
  }
  BTX_CHECK(!v.vocab_.empty(), "{}: tfidf.vocab is empty", where);
  BTX_CHECK(idf.defined() && idf.dim() == 1 && idf.size(0) == static_cast<int64_t>(v.vocab_.size()),
            "{}: tensor 'idf' must have shape [{}] (one per tfidf.vocab term), got {}", where,
            v.vocab_.size(), idf.defined() ? c10::str(idf.sizes()) : std::string("none"));
  const auto f = idf.to(torch::kFloat).contiguous();
  BTX_CHECK(torch::isfinite(f).all().item<bool>() && (f > 0).all().item<bool>(),
            "{}: tensor 'idf' has values that are not finite and positive", where);
  v.idf_.assign(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
  v.build_index(where);
  return v;
}

}  // namespace btx
