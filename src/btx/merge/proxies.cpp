#include "btx/merge/proxies.h"

#include <spdlog/spdlog.h>

#include <cmath>

#include "btx/corpus/corpus.h"
#include "btx/data/shards.h"
#include "btx/merge/dpp.h"
#include "btx/merge/method.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

// A candidate document: where it is in the pool.
struct Candidate {
  size_t source, chunk;
};

// Per-document mean next-token log-likelihood (n) and normalised mean final hidden state (n, C)
// of `model` on windows (n, T + 1), 16 at a time, from one forward each.
std::pair<torch::Tensor, torch::Tensor> score(CausalLM& model, const torch::Tensor& windows) {
  torch::NoGradGuard no_grad;
  model->eval();
  std::vector<torch::Tensor> ll, feat;
  const int64_t T = windows.size(1) - 1;
  for (int64_t r = 0; r < windows.size(0); r += 16) {
    const auto w = windows.narrow(0, r, std::min<int64_t>(16, windows.size(0) - r));
    const auto h = model->model->forward(w.narrow(1, 0, T));  // (b, T, C)
    const auto logp = torch::log_softmax(model->lm_logits(h).to(torch::kFloat32), -1);
    ll.push_back(
        logp.gather(2, w.narrow(1, 1, T).unsqueeze(2)).squeeze(2).mean(1).to(torch::kFloat64));
    const auto m = h.mean(1).to(torch::kFloat64);
    feat.push_back(m / m.norm(2, 1, /*keepdim=*/true).clamp_min(1e-12));
  }
  return {torch::cat(ll), torch::cat(feat)};
}

}  // namespace

nlohmann::json select_proxies(const Run& run, const ProxyOptions& o) {
  BTX_CHECK(o.per_expert >= 1, "proxies: --per-expert must be >= 1, got {}", o.per_expert);
  BTX_CHECK(o.candidates >= 0, "proxies: --candidates must be >= 0 (0: all), got {}", o.candidates);
  BTX_CHECK(o.chunk_bytes >= 64, "proxies: --chunk-bytes must be >= 64, got {}", o.chunk_bytes);
  BTX_CHECK(std::isfinite(o.temperature) && o.temperature > 0,
            "proxies: --temperature must be > 0, got {}", o.temperature);
  BTX_CHECK(!o.out.empty(), "proxies: no output folder given (--out)");
  const ModelConfig mc = load_model_config(run.seed());
  const int64_t T = o.seq_len > 0 ? o.seq_len : run.config().experts.train.seq_len;
  BTX_CHECK(T >= 8 && T <= mc.max_sequence(),
            "proxies: --seq-len {} must be in [8, {}] (the model's longest sequence)", T,
            mc.max_sequence());
  BTX_CHECK(fs::is_directory(o.pool), "proxies: --pool {} is not a corpus folder", o.pool.string());
  const auto experts = trained_experts(run);

  // The pool's documents (a folder domain's files, a .txt domain's chunks), a seeded sample of
  // them, each cut to seq_len + 1 tokens; shorter ones are left out.
  std::vector<DomainText> sources;
  std::vector<Candidate> all;
  for (const auto& dom : select_domains(list_corpus(o.pool), o.domains, o.pool)) {
    const bool folder = fs::is_directory(o.pool / dom.name);
    sources.push_back(read_domain_chunks(dom, folder ? (int64_t{1} << 50) : o.chunk_bytes));
    for (size_t c = 0; c < sources.back().chunks.size(); ++c)
      all.push_back({sources.size() - 1, c});
  }
  std::vector<size_t> order = seeded_permutation(all.size(), derive_seed(o.seed, "proxies"));
  const Tokenizer& tok = run.tokenizer();
  std::vector<Candidate> kept;
  std::vector<torch::Tensor> rows;
  for (size_t i : order) {
    if (o.candidates > 0 && static_cast<int64_t>(kept.size()) >= o.candidates) break;
    const Candidate& c = all[i];
    auto ids = tok.encode(std::string(sources[c.source].chunk(c.chunk)));
    if (static_cast<int64_t>(ids.size()) < T + 1) continue;
    ids.resize(static_cast<size_t>(T + 1));
    rows.push_back(torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())));
    kept.push_back(c);
  }
  BTX_CHECK(static_cast<int64_t>(kept.size()) >= o.per_expert,
            "proxies: the pool {} has {} documents of at least {} tokens, fewer than "
            "--per-expert {}",
            o.pool.string(), kept.size(), T + 1, o.per_expert);
  const auto windows = torch::stack(rows);  // (n, T + 1)
  spdlog::info("proxies: {} pool documents scored by the seed and {} experts", kept.size(),
               experts.size());

  CausalLM seed = load_model(run.seed());
  const auto seed_ll = score(seed, windows).first;
  nlohmann::json chosen = nlohmann::json::object();
  std::vector<std::pair<std::string, std::string>> texts;
  for (const auto& e : experts) {
    CausalLM model = load_model(e.dir);
    const auto [ll, features] = score(model, windows);
    const auto relevance = ll - seed_ll;
    // exp of relevance over temperature, shifted by its maximum: a common factor of every
    // quality scales each det(L_Y) alike, so the choice does not change.
    const auto quality = ((relevance - relevance.max()) / o.temperature).exp().clamp_min(1e-150);
    const auto picks = greedy_dpp_map(features, quality, o.per_expert);
    nlohmann::json docs = nlohmann::json::array();
    std::string text;
    for (int64_t p : picks) {
      const Candidate& c = kept[static_cast<size_t>(p)];
      docs.push_back({{"source", sources[c.source].name},
                      {"chunk", c.chunk},
                      {"relevance", relevance[p].item<double>()}});
      if (!text.empty()) text += "\n\n";
      text += std::string(sources[c.source].chunk(c.chunk));
    }
    chosen[e.name] = docs;
    texts.emplace_back(e.name, std::move(text));
    spdlog::info(
        "proxies: expert '{}': {} documents, mean relevance {:.3f} (pool {:.3f})", e.name,
        picks.size(),
        picks.empty() ? 0.0 : relevance.index_select(0, torch::tensor(picks)).mean().item<double>(),
        relevance.mean().item<double>());
  }
  const nlohmann::json manifest = {{"proxies", chosen},
                                   {"pool", fs::absolute(o.pool).string()},
                                   {"domains", o.domains},
                                   {"per_expert", o.per_expert},
                                   {"candidates", kept.size()},
                                   {"seq_len", T},
                                   {"temperature", o.temperature},
                                   {"seed", o.seed}};
  const RunConfig& c = run.config();
  write_dir_atomic(o.out, [&](const fs::path& tmp) {
    fs::create_directories(tmp / "corpus");
    for (const auto& [name, text] : texts)
      write_file_atomic(tmp / "corpus" / (name + ".txt"), text + "\n");
    ShardOptions shards;
    shards.corpus = tmp / "corpus";
    shards.out = tmp / "data";
    shards.train_tokens = c.data.train_tokens;
    shards.valid_tokens = c.data.valid_tokens;
    shards.test_tokens = c.data.test_tokens;
    shards.chunk_bytes = c.data.chunk_bytes;
    shards.seed = derive_seed(o.seed, "proxies/shards");
    try {
      prepare_shards(shards, tok);
    } catch (const Error& e) {
      fail(
          "proxies: the proxies do not fill the run's [data] budgets ({}): choose more "
          "--per-expert documents or a larger --chunk-bytes",
          e.what());
    }
    write_file_atomic(tmp / "manifest.json", manifest.dump(2));
  });
  return manifest;
}

}  // namespace btx
