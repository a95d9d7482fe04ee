#include "btx/generate/generate.h"

#include <algorithm>
#include <limits>
#include <random>

#include "btx/model/router.h"
#include "btx/run/open.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"

namespace btx {

void validate_sampling(const SamplingOptions& o) {
  BTX_CHECK(o.temperature >= 0, "temperature must be >= 0, got {}", o.temperature);
  BTX_CHECK(o.top_k >= 0, "top_k must be >= 0, got {}", o.top_k);
  BTX_CHECK(o.top_p > 0 && o.top_p <= 1, "top_p must be in (0, 1], got {}", o.top_p);
}

int64_t choose_token(const torch::Tensor& logits, const SamplingOptions& o, double u) {
  auto l = logits.to(torch::kFloat64).reshape({-1});
  if (o.temperature == 0) return l.argmax().item<int64_t>();
  auto probs = torch::softmax(l / o.temperature, 0);
  auto [sorted, order] = probs.sort(/*dim=*/0, /*descending=*/true);
  int64_t keep = sorted.size(0);
  if (o.top_k > 0) keep = std::min(keep, o.top_k);
  if (o.top_p < 1) {
    // The smallest prefix whose mass reaches top_p (at least one token).
    auto mass = sorted.cumsum(0);
    const int64_t reach = (mass < o.top_p).sum().item<int64_t>() + 1;
    keep = std::min(keep, reach);
  }
  auto kept = sorted.narrow(0, 0, keep);
  auto cdf = kept.cumsum(0) / kept.sum();
  int64_t i = (cdf <= u).sum().item<int64_t>();
  i = std::min(i, keep - 1);
  return order[i].item<int64_t>();
}

// ---- ModelDecoder ------------------------------------------------------------------------

ModelDecoder::ModelDecoder(CausalLM model, bool use_cache) : model_(std::move(model)) {
  const auto& c = model_->config();
  BTX_CHECK(c.is_causal(),
            "this model reads the whole sequence to route (router_mode {}), so it cannot "
            "generate left to right",
            c.router_mode);
  BTX_CHECK(!(c.is_routed() && c.router().needs_labels),
            "this model routes by the text's domain label (tag routing, an oracle baseline), "
            "which a prompt does not have; generate from a learned-routing model (btx, upcycle) "
            "or an expert instead");
  model_->eval();
  cached_ = use_cache && model_->supports_cache();
}

torch::Tensor ModelDecoder::next_scores(const std::vector<int32_t>& seq) {
  torch::NoGradGuard no_grad;
  const size_t from = cached_ ? static_cast<size_t>(cache_.length) : 0;
  BTX_CHECK(seq.size() > from, "decoder: no new token to read ({} seen)", from);
  std::vector<int64_t> x(seq.begin() + static_cast<std::ptrdiff_t>(from), seq.end());
  auto ids = torch::tensor(x, torch::kInt64).view({1, -1});
  if (cached_) return model_->forward_cached(ids, cache_, LogitsAt::kLast)[0];
  return model_->lm_logits(model_->model(ids).select(1, -1))[0];
}

std::string ModelDecoder::describe() const {
  const auto& c = model_->config();
  std::string kind =
      c.is_smear() ? "SMEAR"
      : c.is_moe() ? fmt::format("MoE ({} experts, {} routing)", c.num_local_experts, c.router_mode)
                   : "dense";
  return fmt::format("{} model, {}", kind, cached_ ? "KV cache" : "recomputed for every token");
}

std::unique_ptr<BatchDecoder> ModelDecoder::batch_decoder() const {
  return cached_ ? std::make_unique<ModelBatchDecoder>(model_) : nullptr;
}

// ---- EnsembleDecoder ---------------------------------------------------------------------

namespace {
// {"posterior": {expert: p}} for a posterior p (E).
nlohmann::json posterior_state(const std::vector<std::string>& names, const torch::Tensor& p) {
  nlohmann::json post = nlohmann::json::object();
  for (size_t j = 0; j < names.size(); ++j)
    post[names[j]] = p[static_cast<int64_t>(j)].item<double>();
  return {{"posterior", post}};
}
}  // namespace

torch::Tensor ensemble_posterior(const torch::Tensor& evidence, int64_t top_k) {
  return keep_top_k(torch::log_softmax(evidence, -1), top_k, -1).exp();
}

EnsembleDecoder::EnsembleDecoder(std::vector<std::string> names, std::vector<CausalLM> experts,
                                 int64_t top_k, bool use_cache)
    : names_(std::move(names)), experts_(std::move(experts)), top_k_(top_k), cached_(use_cache) {
  EnsembleOptions o;
  o.prior = EnsemblePrior::kUpdating;
  o.top_k = top_k;
  // The scorer checks the options and that the experts share a vocabulary.
  scorer_ = std::make_unique<EnsembleScorer>(names_, experts_, o);
  for (size_t j = 0; j < experts_.size(); ++j) {
    BTX_CHECK(experts_[j]->config().is_causal(), "ensemble: expert '{}' is not a causal model",
              names_[j]);
  }
  if (cached_) batch_ = std::make_unique<EnsembleBatchDecoder>(names_, experts_, top_k_);
  reset();
}

void EnsembleDecoder::reset() {
  if (batch_) batch_->keep({});
  evidence_ = torch::zeros({static_cast<int64_t>(experts_.size())}, torch::kFloat64);
  seen_ = 0;
}

int64_t EnsembleDecoder::context() const {
  return scorer_->max_context();
}

std::unique_ptr<BatchDecoder> EnsembleDecoder::batch_decoder() const {
  return cached_ ? std::make_unique<EnsembleBatchDecoder>(names_, experts_, top_k_) : nullptr;
}

torch::Tensor EnsembleDecoder::posterior() const {
  if (batch_ && batch_->rows() == 1) return batch_->posterior(0);
  return ensemble_posterior(evidence_, top_k_);
}

torch::Tensor EnsembleDecoder::next_scores(const std::vector<int32_t>& seq) {
  torch::NoGradGuard no_grad;
  BTX_CHECK(seq.size() > seen_, "decoder: no new token to read ({} seen)", seen_);
  if (cached_) {
    torch::Tensor scores;
    if (batch_->rows() == 0) {
      scores = batch_->add(seq);
    } else {
      for (size_t t = seen_; t < seq.size(); ++t) scores = batch_->step({seq[t]})[0];
    }
    seen_ = seq.size();
    return scores;
  }
  // Recompute: the evaluation's ensemble with its updating prior over the whole sequence (the
  // reference the cached path is tested against); its experts' log-likelihoods of the text are
  // the evidence for state(). (Every expert runs under the updating prior.)
  std::vector<int64_t> x(seq.begin(), seq.end());
  torch::Tensor ll;  // (E, 1, T)
  auto lp = scorer_->log_probs(torch::tensor(x, torch::kInt64).view({1, -1}), &ll);
  evidence_ = ll.sum({1, 2});
  seen_ = seq.size();
  return lp[0][-1];
}

nlohmann::json EnsembleDecoder::state() const {
  return posterior_state(names_, posterior());
}

std::string EnsembleDecoder::describe() const {
  return fmt::format("ensemble of {} experts, posterior updated per token{}, {}", experts_.size(),
                     top_k_ > 0 && top_k_ < static_cast<int64_t>(experts_.size())
                         ? fmt::format(" (top-{})", top_k_)
                         : "",
                     cached_ ? "KV caches" : "recomputed for every token");
}

std::unique_ptr<Decoder> open_decoder(const std::filesystem::path& dir, bool use_cache) {
  BTX_CHECK(std::filesystem::is_directory(dir), "model folder {} does not exist", dir.string());
  if (is_checkpoint(dir)) return std::make_unique<ModelDecoder>(load_model(dir), use_cache);
  const nlohmann::json manifest = read_merge_manifest(dir);
  BTX_CHECK(!manifest.is_null(),
            "{} is neither a checkpoint (model.safetensors + config.json) nor a merged "
            "description (merge.json)",
            dir.string());
  const std::string kind = manifest.value("kind", std::string("?"));
  BTX_CHECK(kind == "ensemble",
            "{} is a {} description ({}): it is one dense model per target domain, built from "
            "that domain's held-out text, so it has no single model to generate from; generate "
            "from the ensemble or an expert instead",
            dir.string(), manifest.value("method", kind), kind);
  const EnsembleOptions o = described_ensemble_options(dir, manifest);
  auto [names, models] = load_described_experts(dir, manifest);
  return std::make_unique<EnsembleDecoder>(std::move(names), std::move(models), o.top_k, use_cache);
}

size_t utf8_incomplete_tail(std::string_view s) {
  // Look back over at most 3 continuation bytes (10xxxxxx) to the lead byte.
  const size_t n = s.size();
  for (size_t back = 1; back <= std::min<size_t>(4, n); ++back) {
    const auto b = static_cast<unsigned char>(s[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // a continuation byte: keep looking
    const size_t need = (b & 0xE0) == 0xC0   ? 2
                        : (b & 0xF0) == 0xE0 ? 3
                        : (b & 0xF8) == 0xF0 ? 4
                                             : 1;
    return back < need ? back : 0;
  }
  return 0;
}

// ---- generate ----------------------------------------------------------------------------

void validate_request(int64_t context, const std::vector<int32_t>& prompt,
                      const GenerateOptions& o) {
  validate_sampling(o.sampling);
  BTX_CHECK(!prompt.empty(), "the prompt is empty (it must have at least one token)");
  BTX_CHECK(o.max_tokens >= 0, "max_tokens must be >= 0, got {}", o.max_tokens);
  BTX_CHECK(static_cast<int64_t>(prompt.size()) < context,
            "the prompt has {} tokens but the model's context is {} (it must leave room for at "
            "least one new token)",
            prompt.size(), context);
}

Generation::Generation(const Tokenizer& tok, std::vector<int32_t> prompt, GenerateOptions o,
                       int64_t context, std::function<void(const std::string&)> on_text)
    : tok_(tok),
      all_(std::move(prompt)),
      o_(std::move(o)),
      context_(context),
      on_text_(std::move(on_text)),
      rng_(o_.sampling.seed) {
  validate_request(context_, all_, o_);
  r_.finish_reason = "length";
}

bool Generation::wants_more() {
  if (ended_) return false;
  if (o_.cancel && o_.cancel->load()) {
    r_.finish_reason = "cancelled";
    ended_ = true;
  }
  if (static_cast<int64_t>(r_.tokens.size()) >= o_.max_tokens ||
      static_cast<int64_t>(all_.size()) >= context_) {
    ended_ = true;
  }
  return !ended_;
}

void Generation::take(const torch::Tensor& scores) {
  BTX_CHECK(!ended_, "generation: a token taken after the end");
  const double u =
      o_.sampling.temperature > 0 ? std::uniform_real_distribution<double>(0.0, 1.0)(rng_) : 0.0;
  const auto next = static_cast<int32_t>(choose_token(scores, o_.sampling, u));
  if (o_.stop_at_eos && next == tok_.eos_id()) {
    r_.finish_reason = "eos";
    ended_ = true;
    return;
  }
  all_.push_back(next);
  r_.tokens.push_back(next);
  r_.text += tok_.decode({next});
  for (const auto& s : o_.stop) {
    const auto at = s.empty() ? std::string::npos : r_.text.find(s);
    if (at != std::string::npos) {
      r_.text.resize(at);
      r_.finish_reason = "stop";
      ended_ = true;
    }
  }
  if (!ended_) flush(false);
}

void Generation::flush(bool all_of_it) {
  // Text is final up to `emitted_`; the rest waits while it could still begin a stop string or
  // ends inside a UTF-8 character.
  size_t safe = r_.text.size();
  if (!all_of_it) {
    safe -= utf8_incomplete_tail(r_.text);
    for (const auto& s : o_.stop) {
      for (size_t k = std::min(s.size() - 1, r_.text.size()); k > 0; --k) {
        if (r_.text.compare(r_.text.size() - k, k, s, 0, k) == 0) {
          safe = std::min(safe, r_.text.size() - k);
          break;
        }
      }
    }
  }
  if (safe > emitted_ && on_text_) on_text_(r_.text.substr(emitted_, safe - emitted_));
  emitted_ = std::max(emitted_, safe);
}

GenerateResult Generation::finish() {
  ended_ = true;
  if (r_.finish_reason != "cancelled") flush(true);
  return r_;
}

GenerateResult generate(Decoder& d, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& o,
                        const std::function<void(const std::string&)>& on_text) {
  torch::NoGradGuard no_grad;
  Generation g(tok, prompt, o, d.context(), on_text);
  d.reset();
  while (g.wants_more()) g.take(d.next_scores(g.sequence()));
  return g.finish();
}

GenerateResult generate(CausalLM& model, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& o,
                        const std::function<void(const std::string&)>& on_text) {
  ModelDecoder d(model, o.use_cache);
  return generate(d, tok, prompt, o, on_text);
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
    auto lp = torch::log_softmax(e.add_rows_all(prompts), -1).to(torch::kFloat64);  // (n, T, V)
    auto ll = lp.narrow(1, 0, T - 1).gather(2, next).squeeze(2);                    // (n, T-1)
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
    lps.push_back(torch::log_softmax(e.step(tokens), -1).to(torch::kFloat64));
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
  return posterior_state(names_, posterior(row));
}

}  // namespace btx
