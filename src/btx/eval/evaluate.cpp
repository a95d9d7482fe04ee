#include "btx/eval/evaluate.h"

#include <cmath>

#include "btx/data/shards.h"
#include "btx/data/tokenizer.h"
#include "btx/util/device.h"
#include "btx/util/error.h"

namespace btx {

torch::Tensor ModelScorer::token_nll(const torch::Tensor& tokens) {
  return btx::token_nll(model_, tokens);
}

double DomainScore::ppl() const {
  return std::exp(loss);
}

DomainScore score_stream(Scorer& scorer, const torch::Tensor& stream, int64_t seq_len,
                         int64_t batch_size, int64_t max_tokens) {
  torch::NoGradGuard no_grad;
  // --precision bf16: autocast for the models on the CPU and on the process's GPU.
  AutocastGuard on_cpu(torch::kCPU, default_bf16());
  AutocastGuard on_gpu(default_device(), default_bf16() && !default_device().is_cpu());
  const int64_t n = stream.size(0);
  BTX_CHECK(n >= seq_len + 1, "cannot evaluate {} tokens with seq_len {}: need at least {}", n,
            seq_len, seq_len + 1);
  int64_t windows = (n - 1) / seq_len;
  if (max_tokens > 0) windows = std::min(windows, std::max<int64_t>(1, max_tokens / seq_len));
  double total = 0;
  DomainScore s;
  s.window_loss.reserve(static_cast<size_t>(windows));
  for (int64_t w0 = 0; w0 < windows; w0 += batch_size) {
    const int64_t b = std::min(batch_size, windows - w0);
    // (b, T+1): window w covers stream[w*T, w*T + T]
    auto rows = stream.narrow(0, w0 * seq_len, b * seq_len + 1);
    auto batch = rows.as_strided({b, seq_len + 1}, {seq_len, 1}).contiguous();
    const auto nll = scorer.token_nll(batch);  // (b, T)
    total += nll.sum().item<double>();
    const auto per_window = nll.to(torch::kFloat64).mean(1).cpu().contiguous();
    const double* w = per_window.data_ptr<double>();
    s.window_loss.insert(s.window_loss.end(), w, w + b);
  }
  s.tokens = windows * seq_len;
  s.loss = total / static_cast<double>(s.tokens);
  return s;
}

namespace {
// A loss that is NaN or infinite is no result (JSON would hold null): an error naming the model.
void check_finite(const std::string& model, const std::string& domain, const DomainScore& s) {
  BTX_CHECK(std::isfinite(s.loss),
            "{}: the loss on domain '{}' is {} (weights holding NaN or Inf: a corrupt or diverged "
            "checkpoint?)",
            model, domain, s.loss);
}
// Chunk i of a novel domain is held out (never scored) when it is every 10th chunk, or the last
// one of a text with fewer than 10; the rest is what is scored.
bool novel_heldout_chunk(size_t i, size_t n) {
  return n < 10 ? (n >= 2 && i + 1 == n) : i % 10 == 9;
}
}  // namespace

torch::Tensor heldout_windows(const torch::Tensor& stream, int64_t windows, int64_t seq_len) {
  const int64_t have = stream.size(0) >= seq_len + 1 ? (stream.size(0) - 1) / seq_len : 0;
  const int64_t n = std::min(have, windows);
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < n; ++i) {
    rows.push_back(stream.narrow(0, (i * have / n) * seq_len, seq_len + 1).to(torch::kInt64));
  }
  return rows.empty() ? torch::zeros({0, seq_len + 1}, torch::kInt64) : torch::stack(rows);
}

torch::Tensor novel_domain_tokens(const CorpusDomain& d, const Tokenizer& tok, int64_t max_tokens,
                                  bool heldout) {
  const DomainText text = read_domain_chunks(d, 8192);
  const size_t n = text.chunks.size();
  std::vector<size_t> part;
  for (size_t i = 0; i < n; ++i) {
    if (novel_heldout_chunk(i, n) == heldout) part.push_back(i);
  }
  // Chunks of ~8 KB hold ~2000 tokens at 4 bytes/token; take every k-th to span the text.
  const size_t want = std::max<size_t>(1, static_cast<size_t>(max_tokens / 1500) + 1);
  const size_t stride = std::max<size_t>(1, part.size() / want);
  std::vector<int32_t> ids;
  for (size_t k = 0; k < part.size() && static_cast<int64_t>(ids.size()) <= max_tokens;
       k += stride) {
    auto piece = tok.encode(text.chunk(part[k]));
    ids.insert(ids.end(), piece.begin(), piece.end());
    ids.push_back(tok.eos_id());
  }
  return torch::tensor(ids, torch::kInt32).to(torch::kInt64);
}

nlohmann::json evaluate(Scorer& scorer, const std::string& model_name, const ShardSet& data,
                        const std::vector<CorpusDomain>& novel, const Tokenizer* tokenizer,
                        const EvalOptions& opts) {
  const std::string who = opts.model_path.empty() ? model_name : opts.model_path;
  BTX_CHECK(opts.seq_len <= scorer.max_context(),
            "model {} reads at most {} tokens (its context) but the evaluation's windows are {} "
            "tokens",
            who, scorer.max_context(), opts.seq_len);
  nlohmann::json out = {{"model", model_name}, {"split", opts.split}, {"seq_len", opts.seq_len}};
  if (!opts.seq_len_from.empty()) out["seq_len_from"] = opts.seq_len_from;
  nlohmann::json domains = nlohmann::json::object();
  double train_sum = 0, novel_sum = 0;
  const auto names = opts.domains.empty() ? data.domains() : opts.domains;
  for (const auto& name : names) {
    const auto& shard = data.shard(name, opts.split);
    scorer.begin_domain(name, [&](int64_t windows) {
      const auto& valid = data.shard(name, "valid");
      return heldout_windows(valid.slice(0, valid.size()), windows, opts.seq_len);
    });
    auto s = score_stream(scorer, shard.slice(0, shard.size()), opts.seq_len, opts.batch_size,
                          opts.max_tokens);
    check_finite(who, name, s);
    domains[name] = {{"tokens", s.tokens},
                     {"loss", s.loss},
                     {"ppl", s.ppl()},
                     {"novel", false},
                     {"window_loss", s.window_loss}};
    if (auto info = scorer.domain_info(); !info.is_null()) domains[name]["model"] = info;
    train_sum += s.loss;
  }
  for (const auto& d : novel) {
    BTX_CHECK(tokenizer, "novel domain '{}' needs a tokenizer", d.name);
    scorer.begin_domain(d.name, [&](int64_t windows) {
      return heldout_windows(
          novel_domain_tokens(d, *tokenizer, windows * (opts.seq_len + 1), /*heldout=*/true),
          windows, opts.seq_len);
    });
    auto s = score_stream(scorer, novel_domain_tokens(d, *tokenizer, opts.novel_max_tokens),
                          opts.seq_len, opts.batch_size, opts.novel_max_tokens);
    check_finite(who, d.name, s);
    domains[d.name] = {{"tokens", s.tokens},
                       {"loss", s.loss},
                       {"ppl", s.ppl()},
                       {"novel", true},
                       {"window_loss", s.window_loss}};
    if (auto info = scorer.domain_info(); !info.is_null()) domains[d.name]["model"] = info;
    novel_sum += s.loss;
  }
  out["domains"] = domains;
  out["params_total"] = scorer.params_total();
  out["params_active"] = scorer.params_active();
  out["flops_per_token"] = scorer.flops_per_token(opts.seq_len);
  out["causal"] = scorer.causal();
  // Macro averages: mean loss over domains, and the perplexity of that mean.
  nlohmann::json summary = nlohmann::json::object();
  if (!names.empty()) {
    summary["train_mean_loss"] = train_sum / names.size();
    summary["train_mean_ppl"] = std::exp(train_sum / names.size());
  }
  if (!novel.empty()) {
    summary["novel_mean_loss"] = novel_sum / novel.size();
    summary["novel_mean_ppl"] = std::exp(novel_sum / novel.size());
  }
  out["summary"] = summary;
  return out;
}

}  // namespace btx
