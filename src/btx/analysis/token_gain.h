// Where a model's gain over the routing-free average (and over the seed) comes from, token by
// token. Only a minority of tokens -- the high-entropy "forking" ones -- carry most of what
// training teaches (Wang et al. 2025, arXiv:2506.01939); if routing pays off mostly there, the
// per-token gains show it. For every test token: the seed's predictive entropy at that position,
// and the gain nll(reference) - nll(model) for the references "average" (the uniform average of
// the run's experts, built in memory as `btx merge --method average` makes it) and "seed". The
// tokens are ranked by the seed's entropy into equal-count bins (deciles); each bin gets its mean
// gain and its share of the total gain, and the top 20% by entropy their share. For a routed
// model, the same bins say how its router chooses: the fraction of (layer, token) choices whose
// top-1 expert is the token's own domain's, and the router's mean entropy.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "btx/run/model_folder.h"
#include "btx/run/run_dir.h"

namespace btx {

// The bin (0 .. bins-1) of each token by the rank of its entropy (N): equal-count bins, bin k
// holding ranks [k·N/bins, (k+1)·N/bins), ties broken by position. (N) int64.
torch::Tensor entropy_bins(const torch::Tensor& entropy, int64_t bins);

// {"tokens", "gain": mean gain (nats/token), "total": Σ gain, "bins": [{"entropy_lo",
//  "entropy_hi", "entropy_mean", "gain_mean", "share"}], "top_share": the share of Σ gain carried
//  by the top_fraction of tokens by entropy} for entropy and gain (N). A share is null when the
// total gain is 0.
nlohmann::json binned_gain(const torch::Tensor& entropy, const torch::Tensor& gain, int64_t bins,
                           double top_fraction = 0.2);

// The mean of `values` (N) in each bin of `bin` (N, from entropy_bins): [bins] (null for an
// empty bin).
nlohmann::json binned_mean(const torch::Tensor& bin, const torch::Tensor& values, int64_t bins);

struct TokenGainOptions {
  int64_t windows = 16;  // test windows per domain (as the routing analysis)
  int64_t bins = 10;
  double top_fraction = 0.2;
};

// {"windows", "bins", "top_fraction", "domains", "novel_domains",
//  "references": {"average"|"seed": {"training": binned_gain over the training domains' tokens
//                  pooled, "novel": ... (when there are novel domains), "domains": {d: ...}}},
//  "router": {"training": {"entropy_mean": [bins], "own_top1": [bins], "router_entropy":
//             [bins]}, "domains": {...}}  (routed models whose experts have their domains)}
// for any model `btx eval` scores (a checkpoint, an ensemble); the run's experts must be trained.
// What the results' findings state of a model's token gains over the experts' average on the
// training domains: the mean gain per token and the share of it carried by the top fraction of
// tokens by the seed's entropy (and that share on the novel domains, when there are some).
struct GainConcentration {
  double gain = 0;
  double top_fraction = 0;
  double top_share = 0;
  std::optional<double> novel_top_share;
};
// From token_gain_analysis()'s JSON; nullopt when it has no training share (a total gain of 0).
std::optional<GainConcentration> gain_concentration(const nlohmann::json& token_gain);

nlohmann::json token_gain_analysis(const Run& run, const ModelFolder& model,
                                   const TokenGainOptions& opts);

}  // namespace btx
