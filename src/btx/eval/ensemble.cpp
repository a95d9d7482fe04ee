#include "btx/eval/ensemble.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <limits>

#include "btx/util/error.h"

namespace btx {

namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

nlohmann::json named_weights(const std::vector<std::string>& names, const torch::Tensor& w) {
  nlohmann::json out = nlohmann::json::object();
  auto c = w.to(torch::kFloat64).contiguous();
  for (size_t j = 0; j < names.size(); ++j)
    out[names[j]] = c[static_cast<int64_t>(j)].item<double>();
  return out;
}

// -log p of every target of `tokens` (B, T+1) under each model of `models` at `idx`: (K, B, T).
torch::Tensor experts_loglik(std::vector<CausalLM>& models, const std::vector<int64_t>& idx,
                             const torch::Tensor& tokens) {
  std::vector<torch::Tensor> ll;
  for (int64_t j : idx) ll.push_back(-btx::token_nll(models[static_cast<size_t>(j)], tokens));
  // The experts may run on a GPU; their mixture is small work, done on the CPU.
  return torch::stack(ll).to(torch::kCPU, torch::kFloat64);
}
}  // namespace

EnsemblePrior parse_ensemble_prior(const std::string& name) {
  if (name == "uniform") return EnsemblePrior::kUniform;
  if (name == "updating") return EnsemblePrior::kUpdating;
  if (name == "cached") return EnsemblePrior::kCached;
  if (name == "cluster") return EnsemblePrior::kCluster;
  fail("unknown ensemble prior '{}' (expected uniform, updating, cached or cluster)", name);
}

std::string to_string(EnsemblePrior prior) {
  switch (prior) {
    case EnsemblePrior::kUniform:
      return "uniform";
    case EnsemblePrior::kUpdating:
      return "updating";
    case EnsemblePrior::kCached:
      return "cached";
    case EnsemblePrior::kCluster:
      return "cluster";
  }
  return "?";
}

torch::Tensor ensemble_log_weights(const torch::Tensor& ll, EnsemblePrior prior,
                                   const torch::Tensor& log_prior, int64_t top_k) {
  BTX_CHECK(ll.dim() == 3, "ensemble weights need log-likelihoods (E, B, T), got {} dims",
            ll.dim());
  const int64_t E = ll.size(0), B = ll.size(1), T = ll.size(2);
  BTX_CHECK(log_prior.numel() == E, "ensemble prior has {} entries for {} experts",
            log_prior.numel(), E);
  auto lp = log_prior.to(torch::kFloat64).reshape({E, 1, 1});
  torch::Tensor logw;
  if (prior == EnsemblePrior::kUpdating) {
    // Evidence before position t: Σ_{s<t} ll[s] (an exclusive prefix sum), then Bayes' rule.
    auto evidence = torch::zeros({E, B, T}, torch::kFloat64);
    if (T > 1) {
      evidence.narrow(2, 1, T - 1).copy_(ll.to(torch::kFloat64).narrow(2, 0, T - 1).cumsum(2));
    }
    logw = torch::log_softmax(evidence + lp, 0);
  } else {
    logw = lp.expand({E, B, T}).contiguous();
  }
  return keep_top_k(logw, top_k, 0);
}

torch::Tensor keep_top_k(const torch::Tensor& log_w, int64_t top_k, int64_t dim) {
  if (top_k <= 0 || top_k >= log_w.size(dim)) return log_w;
  auto keep = std::get<1>(log_w.topk(top_k, dim));
  auto mask = torch::full_like(log_w, kNegInf).scatter_(dim, keep, 0.0);
  return torch::log_softmax(log_w + mask, dim);
}

torch::Tensor mix_log_probs(const torch::Tensor& log_w, const torch::Tensor& lp) {
  return torch::logsumexp(log_w + lp, 0);
}

torch::Tensor cached_prior_from_loglik(const torch::Tensor& seq_ll, double alpha) {
  BTX_CHECK(seq_ll.dim() == 2 && seq_ll.size(1) >= 1,
            "the cached prior needs at least one held-out sequence per expert");
  const int64_t E = seq_ll.size(0);
  auto post = torch::softmax(seq_ll.to(torch::kFloat64), 0);  // (E, W): p(j | sequence w)
  auto prior = torch::full({E}, 1.0 / static_cast<double>(E), torch::kFloat64);
  for (int64_t w = 0; w < post.size(1); ++w)
    prior = (1 - alpha) * prior + alpha * post.select(1, w);
  return prior / prior.sum();
}

torch::Tensor estimate_cached_prior(std::vector<CausalLM>& experts, const torch::Tensor& heldout,
                                    double alpha) {
  torch::NoGradGuard no_grad;
  BTX_CHECK(heldout.dim() == 2 && heldout.size(0) >= 1,
            "the cached prior needs held-out text: got no held-out window");
  std::vector<int64_t> all(experts.size());
  for (size_t j = 0; j < all.size(); ++j) all[j] = static_cast<int64_t>(j);
  std::vector<torch::Tensor> parts;
  constexpr int64_t kRows = 16;
  for (int64_t r = 0; r < heldout.size(0); r += kRows) {
    auto rows = heldout.narrow(0, r, std::min(kRows, heldout.size(0) - r));
    parts.push_back(experts_loglik(experts, all, rows).sum(2));  // (E, rows)
  }
  return cached_prior_from_loglik(torch::cat(parts, 1), alpha);
}

std::vector<Param> ensemble_params() {
  return {
      choice_param("prior", "cached", {"uniform", "updating", "cached", "cluster"},
                   "uniform | updating (Bayes over the prefix) | cached (EMA, then fixed) | "
                   "cluster (c-BTM: the context's distance to the clusters of --cluster-model)"),
      integer_param("top-k", "0", "keep the k most probable experts and renormalise (0: all)", 0),
      real_param("alpha", "0.3", "cached prior: EMA rate over the held-out sequences", 0, 1,
                 /*min_open=*/true),
      integer_param("prior-windows", "16", "cached prior: held-out sequences of the target domain",
                    1),
      text_param("cluster-model",
                 "cluster prior: the folder of `btx cluster --embed seed`'s cluster model (its "
                 "clusters named as the experts)"),
      real_param("temperature", "0.1",
                 "cluster prior: w_j ∝ exp(-|x - c_j|² / temperature) for the context's embedding "
                 "x and the cluster centres c_j",
                 0, std::numeric_limits<double>::infinity(), /*min_open=*/true),
  };
}

EnsembleOptions ensemble_options(const ParamValues& values) {
  EnsembleOptions o;
  o.prior = parse_ensemble_prior(values.text("prior"));
  o.top_k = values.integer("top-k");
  o.alpha = values.real("alpha");
  o.prior_windows = values.integer("prior-windows");
  if (values.has("cluster-model")) o.cluster_model = values.text("cluster-model");
  if (values.has("temperature")) o.temperature = values.real("temperature");
  return o;
}

std::vector<Param> posterior_params() {
  return {
      real_param("alpha", "0.3", "posterior: EMA rate over the held-out sequences", 0, 1,
                 /*min_open=*/true),
      integer_param("prior-windows", "16", "posterior: held-out sequences of the target domain", 1),
  };
}

void validate_ensemble_options(const EnsembleOptions& o, int64_t experts) {
  BTX_CHECK(experts >= 1, "an ensemble needs at least one expert");
  BTX_CHECK(o.top_k >= 0, "top-k must be >= 0 (0: all experts), got {}", o.top_k);
  BTX_CHECK(o.top_k <= experts, "top-k {} is larger than the number of experts ({})", o.top_k,
            experts);
  BTX_CHECK(o.top_k == 0 || o.top_k == experts || o.prior != EnsemblePrior::kUniform,
            "top-k {} of {} experts needs a prior that ranks them (cached or updating); under a "
            "uniform prior every expert ties",
            o.top_k, experts);
  BTX_CHECK(o.alpha > 0 && o.alpha <= 1, "prior EMA rate alpha must be in (0, 1], got {}", o.alpha);
  BTX_CHECK(o.prior_windows >= 1, "prior windows must be >= 1, got {}", o.prior_windows);
  BTX_CHECK((o.prior == EnsemblePrior::kCluster) == !o.cluster_model.empty(),
            o.cluster_model.empty()
                ? "the cluster prior needs --cluster-model (a `btx cluster --embed seed` output)"
                : "--cluster-model is read by the cluster prior only (--prior cluster)");
  BTX_CHECK(o.temperature > 0, "temperature must be > 0, got {}", o.temperature);
}

// ---- EnsembleScorer ---------------------------------------------------------------------

EnsembleScorer::EnsembleScorer(std::vector<std::string> names, std::vector<CausalLM> experts,
                               EnsembleOptions opts)
    : names_(std::move(names)), experts_(std::move(experts)), opts_(opts) {
  const auto E = static_cast<int64_t>(experts_.size());
  BTX_CHECK(static_cast<int64_t>(names_.size()) == E, "ensemble: {} names for {} experts",
            names_.size(), E);
  validate_ensemble_options(opts_, E);
  for (auto& m : experts_) {
    BTX_CHECK(m->config().vocab_size == experts_[0]->config().vocab_size,
              "ensemble: experts '{}' and '{}' have different vocabularies", names_[0],
              names_[&m - experts_.data()]);
    m->eval();
  }
  if (opts_.prior != EnsemblePrior::kCached) {
    prior_ = torch::full({E}, 1.0 / static_cast<double>(E), torch::kFloat64);
  }
}

void EnsembleScorer::set_prior(const torch::Tensor& weights) {
  auto w = weights.to(torch::kFloat64).reshape({-1});
  BTX_CHECK(w.numel() == static_cast<int64_t>(experts_.size()),
            "ensemble prior has {} weights for {} experts", w.numel(), experts_.size());
  BTX_CHECK(w.ge(0).all().item<bool>() && w.isfinite().all().item<bool>(),
            "ensemble prior weights must be finite and >= 0");
  BTX_CHECK(w.sum().item<double>() > 0, "ensemble prior weights are all zero");
  prior_ = w / w.sum();
}

std::vector<int64_t> EnsembleScorer::active_experts() const {
  const auto E = static_cast<int64_t>(experts_.size());
  std::vector<int64_t> idx;
  if (experts_per_token() == E) {
    for (int64_t j = 0; j < E; ++j) idx.push_back(j);
    return idx;
  }
  BTX_CHECK(prior_.defined(),
            "the ensemble's cached prior is not set yet: it is estimated per target domain (btx "
            "eval does so from each domain's held-out text)");
  auto top = std::get<1>(prior_.topk(opts_.top_k));
  for (int64_t i = 0; i < opts_.top_k; ++i) idx.push_back(top[i].item<int64_t>());
  std::sort(idx.begin(), idx.end());
  return idx;
}

torch::Tensor EnsembleScorer::log_weights(const std::vector<int64_t>& idx,
                                          const torch::Tensor& ll) const {
  // The prior restricted to the experts run, renormalised; with a fixed prior they already are
  // its top-k, so only the updating prior still picks its k per position.
  auto log_prior = torch::log(prior_.index_select(0, torch::tensor(idx)));
  log_prior = log_prior - torch::logsumexp(log_prior, 0);
  const int64_t k = opts_.prior == EnsemblePrior::kUpdating ? opts_.top_k : 0;
  return ensemble_log_weights(ll, opts_.prior, log_prior, k);
}

void EnsembleScorer::require_prior() const {
  BTX_CHECK(prior_.defined(),
            "the ensemble's cached prior is not set yet: it is estimated per target domain");
}

int64_t EnsembleScorer::experts_per_token() const {
  const auto E = static_cast<int64_t>(experts_.size());
  // The updating and cluster priors choose their k per position: every expert runs.
  const bool per_position =
      opts_.prior == EnsemblePrior::kUpdating || opts_.prior == EnsemblePrior::kCluster;
  return (opts_.top_k == 0 || per_position) ? E : opts_.top_k;
}

void EnsembleScorer::set_context_router(ContextRouter router,
                                        std::function<int64_t(int64_t)> flops_per_token,
                                        int64_t params) {
  router_ = std::move(router);
  router_flops_ = flops_per_token;
  router_params_ = params;
}

torch::Tensor EnsembleScorer::mixture_log_weights(const std::vector<int64_t>& idx,
                                                  const torch::Tensor& inputs,
                                                  const torch::Tensor& ll) {
  if (opts_.prior != EnsemblePrior::kCluster) return log_weights(idx, ll);
  BTX_CHECK(router_, "the ensemble's cluster prior has no cluster model to route with");
  auto logw = router_(inputs).to(torch::kFloat64);
  BTX_CHECK(logw.dim() == 3 && logw.size(0) == static_cast<int64_t>(experts_.size()) &&
                logw.size(1) == inputs.size(0) && logw.size(2) == inputs.size(1),
            "the cluster router gave weights of the wrong shape");
  logw = keep_top_k(logw, opts_.top_k, 0);
  auto w = logw.exp().sum({1, 2});
  weight_sum_ = weight_sum_.defined() ? weight_sum_ + w : w;
  weight_count_ += inputs.numel();
  return logw;
}

torch::Tensor EnsembleScorer::token_nll(const torch::Tensor& tokens) {
  torch::NoGradGuard no_grad;
  require_prior();
  const auto idx = active_experts();
  auto ll = experts_loglik(experts_, idx, tokens);  // (K, B, T)
  auto logw = mixture_log_weights(idx, tokens.narrow(1, 0, tokens.size(1) - 1), ll);
  return (-mix_log_probs(logw, ll)).to(torch::kFloat32);
}

torch::Tensor EnsembleScorer::log_probs(const torch::Tensor& inputs, torch::Tensor* loglik) {
  torch::NoGradGuard no_grad;
  require_prior();
  const auto idx = active_experts();
  const int64_t B = inputs.size(0), T = inputs.size(1);
  std::vector<torch::Tensor> lps;
  for (int64_t j : idx) {
    lps.push_back(torch::log_softmax(experts_[static_cast<size_t>(j)]->forward(inputs), -1)
                      .to(torch::kCPU, torch::kFloat64));  // mixed on the CPU
  }
  auto lp = torch::stack(lps);  // (K, B, T, V)
  const int64_t K = lp.size(0);
  // Evidence for the updating prior: ll[t] = log p(inputs[t+1] | inputs[<=t]); the last
  // position's target is unknown and never used (the prefix sum is exclusive).
  auto ll = torch::zeros({K, B, T}, torch::kFloat64);
  if (T > 1) {
    auto next = inputs.narrow(1, 1, T - 1).unsqueeze(0).unsqueeze(-1).expand({K, B, T - 1, 1});
    ll.narrow(2, 0, T - 1).copy_(lp.narrow(2, 0, T - 1).gather(3, next).squeeze(3));
  }
  auto logw = mixture_log_weights(idx, inputs, ll);
  if (loglik) *loglik = ll;
  return mix_log_probs(logw.unsqueeze(-1), lp).to(torch::kFloat32);
}

int64_t EnsembleScorer::params_total() const {
  int64_t n = 0;
  for (const auto& m : experts_) n += m->num_params();
  return n + router_params_;
}

int64_t EnsembleScorer::params_active() const {
  return experts_per_token() * experts_[0]->num_active_params() + router_params_;
}

int64_t EnsembleScorer::flops_per_token(int64_t context) const {
  return experts_per_token() * forward_flops_per_token(experts_[0], context) +
         (router_flops_ ? router_flops_(context) : 0);
}

int64_t EnsembleScorer::max_context() const {
  int64_t n = std::numeric_limits<int64_t>::max();
  for (const auto& m : experts_) n = std::min(n, m->config().max_sequence());
  return n;
}

void EnsembleScorer::begin_domain(const std::string& domain, const Heldout& heldout) {
  weight_sum_ = torch::Tensor();
  weight_count_ = 0;
  if (opts_.prior != EnsemblePrior::kCached) return;
  auto windows = heldout(opts_.prior_windows);
  BTX_CHECK(windows.size(0) >= 1,
            "domain '{}' has no held-out text to estimate the ensemble's cached prior from",
            domain);
  prior_ = estimate_cached_prior(experts_, windows, opts_.alpha);
  spdlog::debug("ensemble prior for '{}': {}", domain, named_weights(names_, prior_).dump());
}

nlohmann::json EnsembleScorer::domain_info() const {
  if (!prior_.defined()) return nullptr;
  nlohmann::json active = nlohmann::json::array();
  for (int64_t j : active_experts()) active.push_back(names_[static_cast<size_t>(j)]);
  nlohmann::json info = {{"prior_mode", to_string(opts_.prior)},
                         {"prior", named_weights(names_, prior_)},
                         {"experts_run", active}};
  if (opts_.prior == EnsemblePrior::kCluster) {
    // Per position, so no one prior: the mean weight of each expert over the domain's positions.
    info.erase("prior");
    if (weight_count_ > 0) {
      info["mean_weights"] =
          named_weights(names_, weight_sum_ / static_cast<double>(weight_count_));
    }
  }
  return info;
}

// ---- PosteriorAverageScorer ---------------------------------------------------------------

CausalLM average_models(const std::vector<CausalLM>& models, const torch::Tensor& weights) {
  BTX_CHECK(!models.empty(), "average of no models");
  BTX_CHECK(weights.numel() == static_cast<int64_t>(models.size()), "{} weights for {} models",
            weights.numel(), models.size());
  auto w = weights.to(torch::kFloat64);
  w = w / w.sum();
  CausalLM out(models[0]->config());
  torch::NoGradGuard no_grad;
  std::vector<std::vector<torch::Tensor>> params;
  for (const auto& m : models) {
    BTX_CHECK(m->config() == models[0]->config(), "cannot average models of different shapes");
    params.push_back(m->parameters());
  }
  auto target = out->parameters();
  for (size_t p = 0; p < target.size(); ++p) {
    auto acc = torch::zeros(target[p].sizes(), torch::kFloat64);
    for (size_t j = 0; j < models.size(); ++j) {
      acc.add_(params[j][p].to(torch::kFloat64), w[static_cast<int64_t>(j)].item<double>());
    }
    target[p].copy_(acc);
  }
  out->eval();
  return out;
}

PosteriorAverageScorer::PosteriorAverageScorer(std::vector<std::string> names,
                                               std::vector<CausalLM> experts, double alpha,
                                               int64_t prior_windows)
    : names_(std::move(names)),
      experts_(std::move(experts)),
      alpha_(alpha),
      prior_windows_(prior_windows) {
  BTX_CHECK(!experts_.empty() && names_.size() == experts_.size(),
            "posterior average: {} names for {} experts", names_.size(), experts_.size());
  validate_ensemble_options({EnsemblePrior::kCached, 0, alpha_, prior_windows_},
                            static_cast<int64_t>(experts_.size()));
  for (auto& m : experts_) m->eval();
}

torch::Tensor PosteriorAverageScorer::token_nll(const torch::Tensor& tokens) {
  BTX_CHECK(!merged_.is_empty(),
            "the posterior-weighted average is made per target domain: no domain set yet");
  return btx::token_nll(merged_, tokens);
}

int64_t PosteriorAverageScorer::params_total() const {
  return experts_[0]->num_params();
}
int64_t PosteriorAverageScorer::params_active() const {
  return experts_[0]->num_active_params();
}
int64_t PosteriorAverageScorer::flops_per_token(int64_t context) const {
  return forward_flops_per_token(experts_[0], context);
}
int64_t PosteriorAverageScorer::max_context() const {
  return experts_[0]->config().max_sequence();
}

void PosteriorAverageScorer::begin_domain(const std::string& domain, const Heldout& heldout) {
  auto windows = heldout(prior_windows_);
  BTX_CHECK(windows.size(0) >= 1,
            "domain '{}' has no held-out text to estimate the posterior weights from", domain);
  weights_ = estimate_cached_prior(experts_, windows, alpha_);
  merged_ = average_models(experts_, weights_);
}

nlohmann::json PosteriorAverageScorer::domain_info() const {
  if (!weights_.defined()) return nullptr;
  return {{"weights", named_weights(names_, weights_)}};
}

}  // namespace btx
