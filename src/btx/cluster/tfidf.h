// tf-idf document vectors for discovering domains by clustering (c-BTM: Gururangan et al. 2023,
// arXiv:2303.14177, cluster documents by k-means over tf-idf). Word tokens, a vocabulary of the
// most frequent terms by document frequency, sublinear tf, smoothed idf, L2-normalised rows,
// returned as a sparse COO tensor (N documents x F features). No stemming, stop words or n-grams.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace btx {

// Calls `emit(token)` for every token of `text`: runs of ASCII letters, digits, '_' and non-ASCII
// bytes (lowercased ASCII; a run longer than kMaxTokenBytes is dropped), and every ASCII
// punctuation character on its own ("{", ";", "#"), which tells code from prose.
inline constexpr size_t kMaxTokenBytes = 40;
void for_each_term(std::string_view text, const std::function<void(std::string_view)>& emit);

struct TfidfOptions {
  int64_t features = 16384;  // F: at most this many terms, the most frequent by document frequency
  int64_t min_df = 2;        // a term must occur in at least this many fit documents
  bool sublinear_tf = true;  // tf = 1 + ln(count) instead of count
};

class TfidfVectorizer {
 public:
  // Chooses the vocabulary (document frequency descending, then the term's bytes ascending) and
  // idf = ln((1 + N) / (1 + df)) + 1 from `docs`. Throws btx::Error when no term reaches min_df.
  static TfidfVectorizer fit(const std::vector<std::string_view>& docs, const TfidfOptions& opts,
                             int threads = 1);
  // Rows are L2-normalised tf * idf over the vocabulary; a document with no known term is a zero
  // row. Sparse COO, coalesced, float32: (N, F). The result does not depend on `threads`.
  torch::Tensor transform(const std::vector<std::string_view>& docs, int threads = 1) const;

  int64_t num_features() const { return static_cast<int64_t>(vocab_.size()); }
  const std::vector<std::string>& vocab() const { return vocab_; }
  const std::vector<float>& idf() const { return idf_; }
  const TfidfOptions& options() const { return opts_; }

  // Settings and vocabulary as JSON (idf travels separately, as a tensor).
  nlohmann::json to_json() const;
  // Rebuilds a vectorizer; throws btx::Error naming `where` and the key at fault (missing keys,
  // duplicate terms, idf of the wrong size or not finite and positive).
  static TfidfVectorizer from_json(const nlohmann::json& j, const torch::Tensor& idf,
                                   const std::string& where);

 private:
  TfidfOptions opts_;
  std::vector<std::string> vocab_;  // feature index -> term
  std::vector<float> idf_;          // (F)
  std::unordered_map<std::string, int32_t> index_;
  void build_index(const std::string& where);
};

}  // namespace btx
