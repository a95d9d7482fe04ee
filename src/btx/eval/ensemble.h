// BTM's ensemble of experts (ELMforest; Li et al. 2022, arXiv:2208.03306, after DEMix, Gururangan
// et al. 2021, arXiv:2108.05036). The experts stay apart; the next-token probability is a mixture
//   p(x_t | x_<t) = Σ_j p(x_t | x_<t, expert j) · w_j(t),
// computed in log space (logsumexp over experts) so nothing underflows. The weights w come from
// a prior over the experts:
//   uniform   w_j = 1/N at every position (the plain probability average);
//   updating  w_j(t) = p(j | x_<t) by Bayes' rule over the prefix from a uniform start:
//             ∝ Π_{s<t} p(x_s | x_<s, j), so the ensemble settles on the experts that explain
//             the sequence so far;
//   cached    fixed weights estimated on a few held-out sequences of the target domain: the
//             updating posterior after each whole sequence, blended into an exponential moving
//             average (α ≈ 0.3) that starts uniform; then fixed, as in BTM's evaluation.
//   cluster   weights at each position from the context x_<=t by a context router that the
//             scorer's owner gives it (set_context_router): c-BTM's distances from the context's
//             embedding to the cluster centres of the discovered domains (Gururangan et al.
//             2023, arXiv:2303.14177; cluster/cluster_model.h), with a temperature; no
//             held-out text is needed.
// top-k keeps the k largest weights at each position and renormalises. With a fixed (cached)
// prior the k experts are the same everywhere, so only those k are run.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "btx/eval/scorer.h"
#include "btx/model/llama.h"
#include "btx/util/params.h"

namespace btx {

enum class EnsemblePrior { kUniform, kUpdating, kCached, kCluster };
EnsemblePrior parse_ensemble_prior(const std::string& name);  // error lists the choices
std::string to_string(EnsemblePrior prior);

// Log mixture weights log w (E, B, T) from the experts' per-token log-likelihoods
// ll (E, B, T), ll[j, b, t] = log p(x_{t+1} | x_<=t, j). `log_prior` (E) is the fixed prior of
// uniform/cached (log of weights summing to 1) and the starting point of updating. top_k 0 or E:
// all experts. Dropped experts get -inf.
torch::Tensor ensemble_log_weights(const torch::Tensor& ll, EnsemblePrior prior,
                                   const torch::Tensor& log_prior, int64_t top_k);

// Log weights `log_w` (normalised along `dim`) restricted to their top_k largest along `dim` and
// renormalised; the others become -inf. top_k 0 or the size of `dim`: unchanged.
torch::Tensor keep_top_k(const torch::Tensor& log_w, int64_t top_k, int64_t dim);

// log p of the mixture: logsumexp_j(log_w + lp) over dim 0, for lp (E, ...) and log_w shaped
// like lp or broadcastable to it.
torch::Tensor mix_log_probs(const torch::Tensor& log_w, const torch::Tensor& lp);

// The cached prior from the log-likelihood of W held-out sequences under each of E experts,
// seq_ll (E, W): prior ← (1-α)·prior + α·p(j | sequence w) for w = 1..W, from uniform. (E), sums
// to 1.
torch::Tensor cached_prior_from_loglik(const torch::Tensor& seq_ll, double alpha);

// The same, running the experts on held-out windows (W, T+1).
torch::Tensor estimate_cached_prior(std::vector<CausalLM>& experts, const torch::Tensor& heldout,
                                    double alpha);

struct EnsembleOptions {
  EnsemblePrior prior = EnsemblePrior::kCached;
  int64_t top_k = 0;           // 0: all experts
  double alpha = 0.3;          // cached prior: EMA rate
  int64_t prior_windows = 16;  // cached prior: held-out sequences per target domain
  std::string cluster_model;   // cluster prior: the cluster model's folder, as given
  double temperature = 0.1;    // cluster prior: of the squared distances
};

// The cluster prior's router: log weights (E, B, T) over the ensemble's experts, in its order,
// at each position of inputs (B, T) from the tokens up to it.
using ContextRouter = std::function<torch::Tensor(const torch::Tensor& inputs)>;

// The ensemble's declared parameters (`btx merge --method ensemble`: prior, top-k, alpha,
// prior-windows) and its options from their checked values: one declaration for the merge that
// records them and for the model folder that reads them back (run/model_folder.h).
std::vector<Param> ensemble_params();
EnsembleOptions ensemble_options(const ParamValues& values);
// The cached posterior's parameters alone (alpha, prior-windows): a per-domain posterior
// average's (weighted-average --target).
std::vector<Param> posterior_params();

// Checks the options against the number of experts (top-k <= N; top-k < N needs a prior that
// ranks the experts; alpha in (0, 1]; prior_windows >= 1; the cluster prior and only it names a
// cluster model; temperature > 0).
void validate_ensemble_options(const EnsembleOptions& o, int64_t experts);

class EnsembleScorer : public Scorer {
 public:
  EnsembleScorer(std::vector<std::string> names, std::vector<CausalLM> experts,
                 EnsembleOptions opts);

  torch::Tensor token_nll(const torch::Tensor& tokens) override;
  // The mixture's next-token distribution in log space: (B, T, V) for inputs (B, T); position t
  // predicts token t+1 from tokens 0..t (the updating prior uses tokens 1..t as evidence).
  // `loglik`, when given, receives the log-likelihood (K, B, T) of each next input token under
  // each expert run (0 at the last position, whose next token is unknown).
  torch::Tensor log_probs(const torch::Tensor& inputs, torch::Tensor* loglik = nullptr);

  int64_t params_total() const override;
  int64_t params_active() const override;
  int64_t flops_per_token(int64_t context) const override;
  int64_t max_context() const override;

  // Cached prior: estimated from the domain's held-out text.
  void begin_domain(const std::string& domain, const Heldout& heldout) override;
  nlohmann::json domain_info() const override;

  // Sets the fixed prior (E weights, >= 0, not all zero; normalised here).
  void set_prior(const torch::Tensor& weights);
  // The cluster prior's router, and what it costs per token beyond the experts: its forward
  // FLOPs at a context length, its parameters.
  void set_context_router(ContextRouter router, std::function<int64_t(int64_t)> flops_per_token,
                          int64_t params);
  torch::Tensor prior() const { return prior_; }
  // The experts run for every token: the top-k of a fixed prior, else all.
  std::vector<int64_t> active_experts() const;
  const std::vector<std::string>& names() const { return names_; }

 private:
  // Log mixture weights (K, B, T) of the experts `idx` for their log-likelihoods ll (K, B, T).
  torch::Tensor log_weights(const std::vector<int64_t>& idx, const torch::Tensor& ll) const;
  void require_prior() const;         // an error while the cached prior is not estimated yet
  int64_t experts_per_token() const;  // the experts run per token: k of a fixed prior, else all

  // The log mixture weights (K, B, T) of the experts `idx` at inputs (B, T) whose next-token
  // log-likelihoods are ll (K, B, T).
  torch::Tensor mixture_log_weights(const std::vector<int64_t>& idx, const torch::Tensor& inputs,
                                    const torch::Tensor& ll);

  std::vector<std::string> names_;
  std::vector<CausalLM> experts_;
  EnsembleOptions opts_;
  torch::Tensor prior_;   // (E) float64, sums to 1
  ContextRouter router_;  // the cluster prior's
  std::function<int64_t(int64_t)> router_flops_;
  int64_t router_params_ = 0;
  torch::Tensor weight_sum_;  // cluster prior: the weights summed over the domain's positions
  int64_t weight_count_ = 0;
};

// BTM's posterior-weighted parameter average, evaluated as BTM does: for each target domain the
// experts' parameters are averaged with the cached prior of that domain (estimated from its
// held-out text, as for the ensemble), and that one dense model scores the domain.
class PosteriorAverageScorer : public Scorer {
 public:
  PosteriorAverageScorer(std::vector<std::string> names, std::vector<CausalLM> experts,
                         double alpha, int64_t prior_windows);
  torch::Tensor token_nll(const torch::Tensor& tokens) override;
  int64_t params_total() const override;
  int64_t params_active() const override;
  int64_t flops_per_token(int64_t context) const override;
  int64_t max_context() const override;
  void begin_domain(const std::string& domain, const Heldout& heldout) override;
  nlohmann::json domain_info() const override;

 private:
  std::vector<std::string> names_;
  std::vector<CausalLM> experts_;
  double alpha_;
  int64_t prior_windows_;
  torch::Tensor weights_;  // (E) of the current domain
  CausalLM merged_{nullptr};
};

// Σ_j w_j θ_j of in-memory models with the same architecture (w normalised to sum 1).
CausalLM average_models(const std::vector<CausalLM>& models, const torch::Tensor& weights);

}  // namespace btx
