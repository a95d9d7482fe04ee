#include "btx/generate/batch_decoder.h"

#include <algorithm>

#include "btx/eval/ensemble.h"
#include "btx/util/error.h"

namespace btx {

// {"posterior": {expert: p}} for a posterior p (E).
nlohmann::json posterior_json(const std::vector<std::string>& names, const torch::Tensor& p) {
  nlohmann::json post = nlohmann::json::object();
  for (size_t j = 0; j < names.size(); ++j)
    post[names[j]] = p[static_cast<int64_t>(j)].item<double>();
  return {{"posterior", post}};
}

torch::Tensor ensemble_posterior(const torch::Tensor& evidence, int64_t top_k) {
  return keep_top_k(torch::log_softmax(evidence, -1), top_k, -1).exp();
}

// ---- Batched decoding --------------------------------------------------------------------

namespace {
// The longest of prompts that are to be read together; each must be non-empty and shorter
// than the context. Checked before any forward, so a refused batch appends nothing.
int64_t longest_prompt(const std::vector<std::vector<int32_t>>& prompts, int64_t context) {
  BTX_CHECK(!prompts.empty(), "batched decoding: no prompt to add");
  int64_t longest = 0;
  for (const auto& p : prompts) {
    BTX_CHECK(!p.empty() && static_cast<int64_t>(p.size()) < context,
              "batched decoding: a prompt of {} tokens for a context of {}", p.size(), context);
    longest = std::max(longest, static_cast<int64_t>(p.size()));
  }
  return longest;
}
}  // namespace

ModelBatchDecoder::ModelBatchDecoder(CausalLM model) : model_(std::move(model)) {
  BTX_CHECK(model_->config().is_causal() && model_->supports_cache(),
            "batched decoding needs a model with a KV cache (router_mode {} has none)",
            model_->config().router_mode);
  model_->eval();
}

torch::Tensor ModelBatchDecoder::prefill(const std::vector<std::vector<int32_t>>& prompts,
                                         LogitsAt at) {
  torch::NoGradGuard no_grad;
  const int64_t T = longest_prompt(prompts, context());
  const auto n = static_cast<int64_t>(prompts.size());
  // Left-padded with token 0: the padding slots are masked out as keys (KVCache.pad) and
  // excluded from SMEAR's prefix sums.
  auto ids = torch::zeros({n, T}, torch::kInt64);
  std::vector<int64_t> pad(prompts.size());
  for (int64_t i = 0; i < n; ++i) {
    const auto& p = prompts[static_cast<size_t>(i)];
    pad[static_cast<size_t>(i)] = T - static_cast<int64_t>(p.size());
    ids[i]
        .narrow(0, pad[static_cast<size_t>(i)], static_cast<int64_t>(p.size()))
        .copy_(torch::tensor(std::vector<int64_t>(p.begin(), p.end()), torch::kInt64));
  }
  KVCache own;
  if (*std::max_element(pad.begin(), pad.end()) > 0) own.pad = torch::tensor(pad, torch::kInt64);
  auto logits = model_->forward_cached(ids, own, at);
  kv_append_rows(cache_, own);
  return logits;
}

torch::Tensor ModelBatchDecoder::add_rows(const std::vector<std::vector<int32_t>>& prompts) {
  return prefill(prompts, LogitsAt::kLast);
}

torch::Tensor ModelBatchDecoder::add_rows_all(const std::vector<std::vector<int32_t>>& prompts) {
  return prefill(prompts, LogitsAt::kAll);
}

torch::Tensor ModelBatchDecoder::step(const std::vector<int32_t>& tokens) {
  torch::NoGradGuard no_grad;
  BTX_CHECK(static_cast<int64_t>(tokens.size()) == rows(),
            "batched decoding: {} tokens for {} rows", tokens.size(), rows());
  std::vector<int64_t> x(tokens.begin(), tokens.end());
  return model_->forward_cached(torch::tensor(x, torch::kInt64).view({-1, 1}), cache_).select(1, 0);
}

EnsembleBatchDecoder::EnsembleBatchDecoder(std::vector<std::string> names,
                                           std::vector<CausalLM> experts, int64_t top_k)
    : names_(std::move(names)), top_k_(top_k) {
  EnsembleOptions o;
  o.prior = EnsemblePrior::kUpdating;
  o.top_k = top_k;
  validate_ensemble_options(o, static_cast<int64_t>(experts.size()));
  BTX_CHECK(names_.size() == experts.size(), "ensemble: {} names for {} experts", names_.size(),
            experts.size());
  for (size_t j = 0; j < experts.size(); ++j) {
    BTX_CHECK(experts[j]->config().vocab_size == experts[0]->config().vocab_size,
              "ensemble: experts '{}' and '{}' have different vocabularies", names_[0], names_[j]);
    experts_.emplace_back(experts[j]);
  }
}

int64_t EnsembleBatchDecoder::context() const {
  int64_t n = std::numeric_limits<int64_t>::max();
  for (const auto& e : experts_) n = std::min(n, e.context());
  return n;
}

torch::Tensor EnsembleBatchDecoder::mixture() const {
  auto logw = ensemble_posterior(evidence_, top_k_).log();  // (B, E)
  return torch::logsumexp(logw.unsqueeze(2) + last_lp_, 1).to(torch::kFloat32);
}

torch::Tensor EnsembleBatchDecoder::add_rows(const std::vector<std::vector<int32_t>>& prompts) {
  torch::NoGradGuard no_grad;
  // Checked here, before the first expert reads them (the experts' contexts may differ).
  const int64_t T = longest_prompt(prompts, context());
  const auto n = static_cast<int64_t>(prompts.size());
  // The evidence of each prompt: each of its tokens after the first, under the position
  // before it. In the left-padded (n, T) layout, position t predicts the token at t + 1, and
  // only the pairs inside a prompt count.
  auto next = torch::zeros({n, T - 1, 1}, torch::kInt64);
  auto inside = torch::zeros({n, T - 1}, torch::kFloat64);
  for (int64_t i = 0; i < n; ++i) {
    const auto& p = prompts[static_cast<size_t>(i)];
    const auto len = static_cast<int64_t>(p.size()), pad = T - len;
    if (len < 2) continue;
    next[i]
        .narrow(0, pad, len - 1)
        .copy_(torch::tensor(std::vector<int64_t>(p.begin() + 1, p.end()), torch::kInt64)
                   .unsqueeze(1));
    inside[i].narrow(0, pad, len - 1).fill_(1.0);
  }
  std::vector<torch::Tensor> evidence, last;
  for (auto& e : experts_) {
    // (n, T, V); the experts may run on a GPU, their mixture runs on the CPU.
    auto lp = torch::log_softmax(e.add_rows_all(prompts), -1).to(torch::kCPU, torch::kFloat64);
    auto ll = lp.narrow(1, 0, T - 1).gather(2, next).squeeze(2);  // (n, T-1)
    evidence.push_back((ll * inside).sum(1));
    last.push_back(lp.select(1, T - 1));
  }
  auto rows_evidence = torch::stack(evidence, 1);  // (n, E)
  auto rows_last = torch::stack(last, 1);          // (n, E, V)
  evidence_ = evidence_.defined() ? torch::cat({evidence_, rows_evidence}) : rows_evidence;
  last_lp_ = last_lp_.defined() ? torch::cat({last_lp_, rows_last}) : rows_last;
  return mixture().narrow(0, rows() - n, n);
}

torch::Tensor EnsembleBatchDecoder::step(const std::vector<int32_t>& tokens) {
  torch::NoGradGuard no_grad;
  BTX_CHECK(static_cast<int64_t>(tokens.size()) == rows(),
            "batched decoding: {} tokens for {} rows", tokens.size(), rows());
  std::vector<int64_t> x(tokens.begin(), tokens.end());
  auto ids = torch::tensor(x, torch::kInt64);
  const int64_t B = rows(), E = static_cast<int64_t>(experts_.size());
  // Each row's token is evidence under the log-probs it was predicted with.
  evidence_ += last_lp_.gather(2, ids.view({B, 1, 1}).expand({B, E, 1})).squeeze(2);
  std::vector<torch::Tensor> lps;
  for (auto& e : experts_)
    lps.push_back(torch::log_softmax(e.step(tokens), -1).to(torch::kCPU, torch::kFloat64));
  last_lp_ = torch::stack(lps, 1);  // (B, E, V)
  return mixture();
}

void EnsembleBatchDecoder::keep(const std::vector<int64_t>& rows) {
  for (auto& e : experts_) e.keep(rows);
  if (rows.empty()) {
    evidence_ = last_lp_ = torch::Tensor();
    return;
  }
  auto index = torch::tensor(rows, torch::kInt64);
  evidence_ = evidence_.index_select(0, index);
  last_lp_ = last_lp_.index_select(0, index);
}

torch::Tensor EnsembleBatchDecoder::posterior(int64_t row) const {
  return ensemble_posterior(evidence_[row], top_k_);
}

nlohmann::json EnsembleBatchDecoder::row_state(int64_t row) const {
  return posterior_json(names_, posterior(row));
}

}  // namespace btx
