// The cluster model (cluster_model.h): the seed LM embedder, document vectors, nearest-centroid
// assignment, and the model folder's reader/writer with every field validated. A seed-embedded
// model refers to its checkpoint by path and sha256 rather than copying the weights.
#include "btx/cluster/cluster_model.h"

#include <algorithm>

#include "btx/cluster/kmeans.h"
#include "btx/data/shards.h"
#include "btx/io/safetensors.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

// The longest prefix of `s` of at most `n` bytes that does not cut a UTF-8 character.
std::string_view utf8_prefix(std::string_view s, size_t n) {
  if (n >= s.size()) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

torch::Tensor normalize_rows(const torch::Tensor& x) {
  return x / x.norm(2, 1, true).clamp_min(1e-12);  // (N, D)
}

}  // namespace

SeedEmbedder::SeedEmbedder(const fs::path& checkpoint, const fs::path& tokenizer, int64_t seq_len,
                           int64_t batch_size)
    : checkpoint_(fs::absolute(checkpoint)),
      tokenizer_path_(fs::absolute(tokenizer)),
      batch_size_(batch_size) {
  BTX_CHECK(is_checkpoint(checkpoint),
            "seed embedding: {} is not a checkpoint folder (model.safetensors + config.json)",
            checkpoint.string());
  BTX_CHECK(fs::is_regular_file(tokenizer), "seed embedding: tokenizer {} does not exist",
            tokenizer.string());
  BTX_CHECK(batch_size >= 1, "seed embedding: batch size must be >= 1, got {}", batch_size);
  model_ = load_model(checkpoint);
  tokenizer_ = Tokenizer::load(tokenizer);
  weights_sha256_ = sha256_file(checkpoint / "model.safetensors");
  // An imported model's embedding may have more rows than its tokenizer has tokens (Qwen's).
  BTX_CHECK(tokenizer_->vocab_size() <= model_->config().vocab_size,
            "seed embedding: tokenizer {} has {} pieces but the model in {} has vocab_size {}",
            tokenizer.string(), tokenizer_->vocab_size(), checkpoint.string(),
            model_->config().vocab_size);
  const int64_t max_t = model_->config().max_sequence();
  // By default the document's first tokens up to the model's longest sequence, at most 2,048
  // (an imported model's is 32k-131k).
  seq_len_ = seq_len == 0 ? std::min<int64_t>(max_t, 2048) : seq_len;
  BTX_CHECK(seq_len_ >= 1 && seq_len_ <= max_t,
            "seed embedding: seq_len {} must be in [1, {}] (the longest sequence of {})", seq_len_,
            max_t, checkpoint.string());
  model_->eval();
}

torch::Tensor SeedEmbedder::embed(const std::vector<std::string_view>& docs) const {
  torch::NoGradGuard no_grad;
  const auto N = static_cast<int64_t>(docs.size());
  auto out = torch::zeros({N, dim()}, torch::kFloat);  // (N, C)
  CausalLM lm = model_;  // the holder shares the module; forward() is not const
  for (int64_t b0 = 0; b0 < N; b0 += batch_size_) {
    const int64_t B = std::min(batch_size_, N - b0);
    std::vector<std::vector<int32_t>> ids(B);
    int64_t T = 1;
    for (int64_t i = 0; i < B; ++i) {
      const std::string_view doc = docs[b0 + i];
      ids[i] = tokenizer_->encode(utf8_prefix(doc, static_cast<size_t>(seq_len_) * 8));
      if (static_cast<int64_t>(ids[i].size()) < seq_len_ &&
          doc.size() > static_cast<size_t>(seq_len_) * 8)
        ids[i] = tokenizer_->encode(doc);
      if (static_cast<int64_t>(ids[i].size()) > seq_len_) ids[i].resize(seq_len_);
      T = std::max<int64_t>(T, ids[i].size());
    }
    auto x = torch::zeros({B, T}, torch::kLong);      // (B, T), right-padded
    auto mask = torch::zeros({B, T}, torch::kFloat);  // (B, T): 1 on real tokens
    for (int64_t i = 0; i < B; ++i) {
      const auto n = static_cast<int64_t>(ids[i].size());
      if (n == 0) continue;  // empty text: a zero vector
      x[i].slice(0, 0, n).copy_(torch::from_blob(ids[i].data(), {n}, torch::kInt));
      mask[i].slice(0, 0, n).fill_(1.0);
    }
    // Causal attention: padding on the right never changes the real positions' states.
    const auto h = lm->model->forward(x);                                    // (B, T, C)
    const auto sum = (h * mask.unsqueeze(2)).sum(1);                         // (B, C)
    out.slice(0, b0, b0 + B).copy_(sum / mask.sum(1, true).clamp_min(1.0));  // (B, C)
  }
  return normalize_rows(out);
}

torch::Tensor SeedEmbedder::prefix_embeddings(const torch::Tensor& ids) const {
  torch::NoGradGuard no_grad;
  CausalLM lm = model_;  // the holder shares the module; forward() is not const
  const auto h = lm->model->forward(ids.to(torch::kLong)).to(torch::kFloat64);  // (B, T, C)
  const auto count = torch::arange(1, ids.size(1) + 1, torch::kFloat64).reshape({1, -1, 1});
  const auto mean = h.cumsum(1) / count;
  return (mean / mean.norm(2, -1, /*keepdim=*/true).clamp_min(1e-12)).to(torch::kFloat);
}

int64_t SeedEmbedder::flops_per_token(int64_t context) const {
  return forward_flops_per_token(model_, context);
}

nlohmann::json SeedEmbedder::to_json() const {
  return {{"checkpoint", checkpoint_.string()},
          {"tokenizer", tokenizer_path_.string()},
          {"weights_sha256", weights_sha256_},
          {"tokenizer_sha256", tokenizer_->sha256()},
          {"seq_len", seq_len_}};
}

torch::Tensor ClusterModel::vectors(const std::vector<std::string_view>& docs, int threads) const {
  if (tfidf) return tfidf->transform(docs, threads);  // (N, F) sparse
  BTX_CHECK(seed != nullptr, "cluster model: embed '{}' has no embedder", embed);
  return seed->embed(docs);  // (N, C)
}

torch::Tensor ClusterModel::context_log_weights(const torch::Tensor& ids,
                                                double temperature) const {
  BTX_CHECK(seed != nullptr,
            "cluster routing needs a cluster model of the seed's hidden states (`btx cluster "
            "--embed seed`); this one embeds with {}, which reads whole documents, not each "
            "position's prefix",
            embed);
  BTX_CHECK(temperature > 0, "cluster routing: temperature must be > 0, got {}", temperature);
  const auto x = seed->prefix_embeddings(ids).to(torch::kFloat64);       // (B, T, C)
  const auto cos = torch::matmul(x, centroids.to(torch::kFloat64).t());  // (B, T, K)
  const auto logw = torch::log_softmax(-(2.0 - 2.0 * cos) / temperature, -1);
  return logw.permute({2, 0, 1}).contiguous();  // (K, B, T)
}

std::vector<std::pair<int64_t, float>> ClusterModel::assign(
    const std::vector<std::string_view>& docs, int threads) const {
  const Assignment a = assign_to_centroids(vectors(docs, threads), centroids);
  const auto labels = a.labels.contiguous();
  const auto sims = a.similarity.contiguous();
  std::vector<std::pair<int64_t, float>> out(docs.size());
  for (size_t i = 0; i < docs.size(); ++i) {
    out[i] = {labels.data_ptr<int64_t>()[i], sims.data_ptr<float>()[i]};
  }
  return out;
}

void ClusterModel::save(const fs::path& dir) const {
  nlohmann::json j = {{"format_version", kClusterModelFormatVersion},
                      {"embed", embed},
                      {"k", k()},
                      {"dim", centroids.size(1)},
                      {"names", names},
                      {"info", info}};
  TensorMap tensors = {{"centroids", centroids.to(torch::kFloat).contiguous()}};
  if (tfidf) {
    j["tfidf"] = tfidf->to_json();
    tensors["idf"] = torch::tensor(tfidf->idf(), torch::kFloat);
  }
  if (seed) j["seed"] = seed->to_json();
  fs::create_directories(dir);
  save_safetensors(dir / kClusterModelTensors, tensors);
  write_file_atomic(dir / kClusterModelJson, j.dump(1) + "\n");  // last: it names the tensors
}

ClusterModel ClusterModel::load(const fs::path& path, int64_t batch_size) {
  const fs::path dir = fs::is_directory(path) ? path : path.parent_path();
  const fs::path json_path = dir / kClusterModelJson;
  const fs::path st_path = dir / kClusterModelTensors;
  BTX_CHECK(fs::is_regular_file(json_path) && fs::is_regular_file(st_path),
            "{} is not a cluster model (expected {} and {} in it, as `btx cluster --out DIR` "
            "writes into DIR)",
            path.string(), kClusterModelJson, kClusterModelTensors);
  const std::string where = json_path.string();
  ClusterModel m;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(json_path));
    const int v = j.at("format_version").get<int>();
    BTX_CHECK(v <= kClusterModelFormatVersion,
              "{}: format_version {} was written by a newer btx (this one reads up to {})", where,
              v, kClusterModelFormatVersion);
    m.embed = j.at("embed").get<std::string>();
    m.names = j.at("names").get<std::vector<std::string>>();
    m.info = j.value("info", nlohmann::json::object());
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed cluster model ({})", where, e.what());
  }
  const SafetensorsFile st = load_safetensors(st_path);
  const auto get = [&](const std::string& name) -> torch::Tensor {
    const auto it = st.tensors.find(name);
    BTX_CHECK(it != st.tensors.end(), "{}: tensor '{}' is missing", st_path.string(), name);
    return it->second.to(torch::kFloat);
  };
  m.centroids = get("centroids");
  const auto K = static_cast<int64_t>(m.names.size());
  BTX_CHECK(m.centroids.dim() == 2 && m.centroids.size(0) == K && K >= 2,
            "{}: tensor 'centroids' has shape {} but {} names {} clusters (need >= 2)",
            st_path.string(), c10::str(m.centroids.sizes()), kClusterModelJson, K);
  BTX_CHECK(torch::isfinite(m.centroids).all().item<bool>(),
            "{}: tensor 'centroids' has values that are not finite", st_path.string());
  int64_t dim = 0;
  if (m.embed == "tfidf") {
    BTX_CHECK(j.contains("tfidf"), "{}: embed is 'tfidf' but key 'tfidf' is missing", where);
    m.tfidf = TfidfVectorizer::from_json(j["tfidf"], get("idf"), where);
    dim = m.tfidf->num_features();
  } else if (m.embed == "seed") {
    std::string ckpt, tok, wsha, tsha;
    int64_t seq_len = 0;
    try {
      const auto& s = j.at("seed");
      ckpt = s.at("checkpoint").get<std::string>();
      tok = s.at("tokenizer").get<std::string>();
      wsha = s.at("weights_sha256").get<std::string>();
      tsha = s.at("tokenizer_sha256").get<std::string>();
      seq_len = s.at("seq_len").get<int64_t>();
    } catch (const nlohmann::json::exception& e) {
      fail("{}: malformed seed settings ({})", where, e.what());
    }
    auto emb = std::make_shared<SeedEmbedder>(ckpt, tok, seq_len, batch_size);
    const nlohmann::json now = emb->to_json();
    BTX_CHECK(now["weights_sha256"] == wsha && now["tokenizer_sha256"] == tsha,
              "{}: the seed checkpoint {} or tokenizer {} changed since the clusters were fitted "
              "(sha256 differs): fit the clusters again",
              where, ckpt, tok);
    m.seed = std::move(emb);
    dim = m.seed->dim();
  } else {
    fail("{}: embed '{}' is unknown (expected 'tfidf' or 'seed')", where, m.embed);
  }
  BTX_CHECK(m.centroids.size(1) == dim,
            "{}: centroids have {} dimensions but the {} embedding has {}", st_path.string(),
            m.centroids.size(1), m.embed, dim);
  return m;
}

nlohmann::json assign_files(const ClusterModel& model, const std::vector<std::string>& files,
                            int64_t chunk_bytes) {
  BTX_CHECK(chunk_bytes == 0 || chunk_bytes >= 64,
            "cluster assign: --chunk-bytes must be 0 (whole files) or >= 64, got {}", chunk_bytes);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& f : files) {
    BTX_CHECK(fs::is_regular_file(f), "cluster assign: --text {} is not a file", f);
    CorpusDomain dom{fs::path(f).filename().string(), {f}, fs::file_size(f)};
    const DomainText text = read_domain_chunks(dom, chunk_bytes > 0 ? chunk_bytes : 1LL << 50);
    std::vector<std::string_view> docs;
    for (size_t i = 0; i < text.chunks.size(); ++i) docs.push_back(text.chunk(i));
    if (docs.empty()) docs.push_back("");  // an empty file still gets a line
    const auto got = model.assign(docs);
    for (size_t i = 0; i < got.size(); ++i) {
      out.push_back({{"file", f},
                     {"chunk", i},
                     {"bytes", docs[i].size()},
                     {"cluster", model.names[got[i].first]},
                     {"similarity", got[i].second}});
    }
  }
  return out;
}

}  // namespace btx
