// The saved cluster model of discovered domains (c-BTM: Gururangan et al. 2023, arXiv:2303.14177):
// a document embedder (tf-idf, or the seed LM's mean final hidden state) and K unit centroids,
// so new text is assigned to the cluster of the most similar centroid. On disk two files in a
// folder (the clustered corpus's own): cluster_model.json (settings, tf-idf vocabulary) and
// cluster_model.safetensors (centroids, tf-idf's idf); list_corpus ignores both.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "btx/cluster/tfidf.h"
#include "btx/data/tokenizer.h"
#include "btx/model/llama.h"

namespace btx {

namespace fs = std::filesystem;

inline constexpr int kClusterModelFormatVersion = 1;
inline constexpr const char* kClusterModelJson = "cluster_model.json";
inline constexpr const char* kClusterModelTensors = "cluster_model.safetensors";

// Mean over tokens of a checkpoint's final hidden states (after the last norm) for the first
// seq_len tokens of each document (no BOS, as in btx's shards), L2-normalised: (N, C).
class SeedEmbedder {
 public:
  // `checkpoint`: a checkpoint folder; `tokenizer`: its tokenizer (tokenizer.model or .json).
  // seq_len 0 means the model's longest sequence, at most 2,048. Throws btx::Error when they do
  // not fit together.
  SeedEmbedder(const fs::path& checkpoint, const fs::path& tokenizer, int64_t seq_len,
               int64_t batch_size);
  torch::Tensor embed(const std::vector<std::string_view>& docs) const;  // (N, C)
  // The embedding of every prefix of token ids (B, T): at position t the L2-normalised mean of
  // the final hidden states of tokens 0..t, what embed() computes for a whole document, at each
  // position (causal) -> (B, T, C).
  torch::Tensor prefix_embeddings(const torch::Tensor& ids) const;
  // Its forward FLOPs per token at context T, and its parameters.
  int64_t flops_per_token(int64_t context) const;
  int64_t num_params() const { return model_->num_params(); }
  int64_t dim() const { return model_->config().hidden_size; }
  int64_t seq_len() const { return seq_len_; }
  nlohmann::json to_json() const;  // paths (absolute) and sha256 of weights and tokenizer

 private:
  fs::path checkpoint_, tokenizer_path_;
  std::string weights_sha256_;
  CausalLM model_{nullptr};
  std::optional<Tokenizer> tokenizer_;
  int64_t seq_len_ = 0, batch_size_ = 4;
};

struct ClusterModel {
  std::string embed;                               // "tfidf" or "seed"
  std::optional<TfidfVectorizer> tfidf;            // when embed == "tfidf"
  std::shared_ptr<const SeedEmbedder> seed;        // when embed == "seed"
  torch::Tensor centroids;                         // (K, D) unit rows
  std::vector<std::string> names;                  // K cluster (domain) names
  nlohmann::json info = nlohmann::json::object();  // how it was fitted (k-means settings, ...)

  int64_t k() const { return centroids.size(0); }
  // Document vectors as the centroids see them: (N, D), sparse for tf-idf, L2-normalised rows.
  torch::Tensor vectors(const std::vector<std::string_view>& docs, int threads = 1) const;
  // The nearest cluster of each document, and its cosine similarity.
  std::vector<std::pair<int64_t, float>> assign(const std::vector<std::string_view>& docs,
                                                int threads = 1) const;

  // c-BTM's routing of a context among the clusters (Gururangan et al. 2023, arXiv:2303.14177):
  // log weights (K, B, T) at each position of ids (B, T) from the embedding x of the prefix up
  // to it, w_j ∝ exp(-|x - c_j|² / temperature) (unit x and c_j: |x - c_j|² = 2 - 2 x·c_j).
  // Needs the seed embedder: tf-idf embeds whole documents, not each prefix (an error says so).
  torch::Tensor context_log_weights(const torch::Tensor& ids, double temperature) const;

  // Writes the two files into `dir` (created if needed), each atomically, the JSON last.
  void save(const fs::path& dir) const;
  // `path`: the folder holding the two files, or cluster_model.json itself. Throws btx::Error
  // naming the file and key at fault: missing files, a newer format_version, an unknown embed,
  // shapes that disagree, a seed checkpoint that changed since fitting.
  static ClusterModel load(const fs::path& path, int64_t batch_size = 4);
};

// `btx cluster assign`: each file (whole, or in line-aligned chunks of about `chunk_bytes`; 0:
// whole) assigned to its nearest cluster: [{"file", "chunk", "bytes", "cluster", "similarity"}],
// in file then chunk order; an empty file still gets a row. A path that is not a file, or
// chunk_bytes in 1..63, is an error naming it.
nlohmann::json assign_files(const ClusterModel& model, const std::vector<std::string>& files,
                            int64_t chunk_bytes);

}  // namespace btx
