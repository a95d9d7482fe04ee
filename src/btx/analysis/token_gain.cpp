#include "btx/analysis/token_gain.h"

#include <fmt/format.h>

#include <cmath>

#include "btx/analysis/routing.h"
#include "btx/data/shards.h"
#include "btx/data/tokenizer.h"
#include "btx/eval/evaluate.h"
#include "btx/merge/method.h"
#include "btx/merge/param_average.h"
#include "btx/model/moe.h"
#include "btx/run/model_scorer.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"

namespace btx {

torch::Tensor entropy_bins(const torch::Tensor& entropy, int64_t bins) {
  BTX_CHECK(entropy.dim() == 1 && entropy.size(0) >= 1 && bins >= 1,
            "entropy_bins: {} values in {} bins (expected a non-empty 1-D tensor and bins >= 1)",
            entropy.numel(), bins);
  const int64_t n = entropy.size(0);
  const auto order = std::get<1>(entropy.to(torch::kFloat64).sort(/*stable=*/true, 0, false));
  const auto rank_bin = torch::arange(n, torch::kInt64).mul(bins).div(n, /*rounding_mode=*/"floor");
  auto out = torch::empty({n}, torch::kInt64);
  out.index_put_({order}, rank_bin);
  return out;
}

nlohmann::json binned_mean(const torch::Tensor& bin, const torch::Tensor& values, int64_t bins) {
  const auto v = values.to(torch::kFloat64).reshape({-1});
  const auto sum = torch::zeros({bins}, torch::kFloat64).index_add_(0, bin, v);
  const auto count = torch::bincount(bin, {}, bins).to(torch::kFloat64);
  nlohmann::json out = nlohmann::json::array();
  for (int64_t k = 0; k < bins; ++k) {
    const double c = count[k].item<double>();
    out.push_back(c > 0 ? nlohmann::json(sum[k].item<double>() / c) : nlohmann::json(nullptr));
  }
  return out;
}

nlohmann::json binned_gain(const torch::Tensor& entropy, const torch::Tensor& gain, int64_t bins,
                           double top_fraction) {
  BTX_CHECK(entropy.sizes() == gain.sizes(), "binned_gain: {} entropies but {} gains",
            entropy.numel(), gain.numel());
  BTX_CHECK(top_fraction > 0 && top_fraction <= 1, "binned_gain: top fraction {} not in (0, 1]",
            top_fraction);
  const auto h = entropy.to(torch::kFloat64).reshape({-1});
  const auto g = gain.to(torch::kFloat64).reshape({-1});
  const int64_t n = h.size(0);
  const auto bin = entropy_bins(h, bins);
  const double total = g.sum().item<double>();
  auto share = [&](double part) {
    return total != 0 ? nlohmann::json(part / total) : nlohmann::json(nullptr);
  };
  const auto gain_sum = torch::zeros({bins}, torch::kFloat64).index_add_(0, bin, g);
  const auto count = torch::bincount(bin, {}, bins).to(torch::kFloat64);
  const auto h_mean = binned_mean(bin, h, bins);
  nlohmann::json out_bins = nlohmann::json::array();
  for (int64_t k = 0; k < bins; ++k) {
    const auto in = bin.eq(k);
    const double c = count[k].item<double>();
    if (c == 0) {
      out_bins.push_back({{"tokens", 0}});
      continue;
    }
    const auto hk = h.masked_select(in);
    out_bins.push_back({{"tokens", static_cast<int64_t>(c)},
                        {"entropy_lo", hk.min().item<double>()},
                        {"entropy_hi", hk.max().item<double>()},
                        {"entropy_mean", h_mean[k]},
                        {"gain_mean", gain_sum[k].item<double>() / c},
                        {"share", share(gain_sum[k].item<double>())}});
  }
  // The top fraction by entropy: the highest ranks, as the bins count them.
  const auto top_n = std::max<int64_t>(1, std::llround(top_fraction * static_cast<double>(n)));
  const auto order = std::get<1>(h.sort(/*stable=*/true, 0, false));
  const double top = g.index_select(0, order.narrow(0, n - top_n, top_n)).sum().item<double>();
  return {{"tokens", n},      {"gain", total / static_cast<double>(n)}, {"total", total},
          {"bins", out_bins}, {"top_fraction", top_fraction},           {"top_share", share(top)}};
}

namespace {

// The uniform average of the run's experts, as `btx merge --method average` writes it, in memory.
CausalLM average_model(const RunDir& run) {
  std::vector<WeightedCheckpoint> inputs;
  for (const auto& e : trained_experts(run)) inputs.push_back({e.dir, 1.0});
  const CheckpointAverager avg(inputs, "the experts' average");
  CausalLM model = load_model(inputs.front().dir);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) p.value().copy_(avg.average(p.key()));
  model->eval();
  return model;
}

// Per token of one domain's windows: what the bins are made of.
struct DomainTokens {
  std::string domain;
  bool novel = false;
  torch::Tensor entropy;                   // the seed's predictive entropy (N)
  torch::Tensor gain_average, gain_seed;   // nll(reference) - nll(model) (N)
  torch::Tensor own_top1, router_entropy;  // routed models: per token, mean over layers (N)
};

torch::Tensor cat(const std::vector<DomainTokens>& ds, bool novel,
                  torch::Tensor DomainTokens::*field) {
  std::vector<torch::Tensor> parts;
  for (const auto& d : ds) {
    if (d.novel == novel && (d.*field).defined()) parts.push_back(d.*field);
  }
  return parts.empty() ? torch::Tensor() : torch::cat(parts);
}

}  // namespace

nlohmann::json token_gain_analysis(const Run& run, const ModelFolder& model,
                                   const TokenGainOptions& opts) {
  const RunConfig& c = run.config();
  torch::NoGradGuard no_grad;
  CausalLM seed = load_model(run.seed());
  seed->eval();
  CausalLM average = average_model(run);
  std::unique_ptr<Scorer> scorer = open_scorer(model);
  BTX_CHECK(scorer->causal(),
            "{}: the model routes whole sequences (its loss at a token reads later tokens), so "
            "its per-token gains are not comparable",
            model.path().string());
  // A routed checkpoint: its router's choices per token.
  auto* dense_scorer = dynamic_cast<ModelScorer*>(scorer.get());
  std::vector<RoutedFfnImpl*> layers;
  ExpertSlots slots;
  if (dense_scorer && dense_scorer->model()->config().is_routed()) {
    layers = routed_layers(dense_scorer->model());
    slots = expert_slots(model, dense_scorer->model()->config().num_local_experts);
  }
  const int64_t T = c.seed_train.seq_len;
  const ShardSet& data = run.shards();
  const auto novel_domains = run_novel_domains(c);
  const Tokenizer& tok = run.tokenizer();

  std::vector<DomainTokens> tokens;
  std::vector<std::string> domains, novel;
  bool any_own = false;
  for (const auto& [d, is_novel, windows] : analysis_windows(run, novel_domains, opts.windows)) {
    domains.push_back(d);
    if (is_novel) novel.push_back(d);
    // What a domain-adaptive model (the ensemble's cached prior) sees before scoring, as in
    // evaluation.
    scorer->begin_domain(d, [&, d = d, is_novel = is_novel](int64_t n) {
      if (!is_novel) {
        const auto& valid = data.shard(d, "valid");
        return heldout_windows(valid.slice(0, valid.size()), n, T);
      }
      for (const auto& nd : novel_domains) {
        if (nd.name == d) {
          return heldout_windows(novel_domain_tokens(nd, tok, n * (T + 1), /*heldout=*/true), n, T);
        }
      }
      fail("novel domain '{}' is not in the run's config", d);
    });
    DomainTokens t{d, is_novel};
    const auto logits = seed->forward(windows.narrow(1, 0, T));  // (n, T, V)
    const auto logp = torch::log_softmax(logits.to(torch::kFloat32), -1);
    t.entropy = -(logp.exp() * logp).sum(-1).reshape({-1}).to(torch::kFloat64);
    const auto target = windows.narrow(1, 1, T).unsqueeze(-1);
    const auto seed_nll = -logp.gather(-1, target).reshape({-1}).to(torch::kFloat64);
    const auto avg_nll = token_nll(average, windows).reshape({-1}).to(torch::kFloat64);
    const auto model_nll = scorer->token_nll(windows).reshape({-1}).to(torch::kFloat64);
    t.gain_average = avg_nll - model_nll;
    t.gain_seed = seed_nll - model_nll;
    if (!layers.empty()) {
      const auto own = own_expert_slots(slots, d);
      auto own_sum = torch::zeros({t.entropy.size(0)}, torch::kFloat64);
      auto h_sum = torch::zeros_like(own_sum);
      for (auto* layer : layers) {
        const Routing& ro = *layer->last_routing();
        const auto top = routing_top1(ro);
        for (int64_t e : own) own_sum += top.eq(e).to(torch::kFloat64);
        h_sum += -(ro.probs * torch::log(ro.probs.clamp_min(1e-30))).sum(1).to(torch::kFloat64);
      }
      const double L = static_cast<double>(layers.size());
      if (!own.empty()) {
        t.own_top1 = own_sum / L;
        any_own = true;
      }
      t.router_entropy = h_sum / L;
    }
    tokens.push_back(std::move(t));
  }

  auto reference = [&](torch::Tensor DomainTokens::*gain) {
    nlohmann::json r = {{"domains", nlohmann::json::object()}};
    for (const auto& t : tokens) {
      r["domains"][t.domain] = binned_gain(t.entropy, t.*gain, opts.bins, opts.top_fraction);
    }
    for (bool is_novel : {false, true}) {
      const auto h = cat(tokens, is_novel, &DomainTokens::entropy);
      if (!h.defined()) continue;
      r[is_novel ? "novel" : "training"] =
          binned_gain(h, cat(tokens, is_novel, gain), opts.bins, opts.top_fraction);
    }
    return r;
  };
  nlohmann::json out = {{"windows", opts.windows},
                        {"bins", opts.bins},
                        {"top_fraction", opts.top_fraction},
                        {"domains", domains},
                        {"novel_domains", novel},
                        {"references",
                         {{"average", reference(&DomainTokens::gain_average)},
                          {"seed", reference(&DomainTokens::gain_seed)}}}};
  if (!layers.empty()) {
    auto router = [&](const torch::Tensor& h, const torch::Tensor& own, const torch::Tensor& re) {
      const auto bin = entropy_bins(h, opts.bins);
      nlohmann::json j = {{"entropy_mean", binned_mean(bin, h, opts.bins)},
                          {"router_entropy", binned_mean(bin, re, opts.bins)}};
      if (own.defined()) j["own_top1"] = binned_mean(bin, own, opts.bins);
      return j;
    };
    nlohmann::json r = {{"domains", nlohmann::json::object()}};
    for (const auto& t : tokens)
      r["domains"][t.domain] = router(t.entropy, t.own_top1, t.router_entropy);
    for (bool is_novel : {false, true}) {
      const auto h = cat(tokens, is_novel, &DomainTokens::entropy);
      if (!h.defined()) continue;
      // Own-domain routing is defined on the training domains only, and pooled only when each
      // of them has its own expert.
      torch::Tensor own;
      if (!is_novel && any_own) {
        own = cat(tokens, false, &DomainTokens::own_top1);
        if (own.size(0) != h.size(0)) own = torch::Tensor();
      }
      r[is_novel ? "novel" : "training"] =
          router(h, own, cat(tokens, is_novel, &DomainTokens::router_entropy));
    }
    out["router"] = r;
  }
  return out;
}

std::optional<GainConcentration> gain_concentration(const nlohmann::json& token_gain) {
  const auto& avg = token_gain.at("references").at("average");
  if (!avg.contains("training") || avg.at("training").at("top_share").is_null()) {
    return std::nullopt;
  }
  const auto& t = avg.at("training");
  GainConcentration g;
  g.gain = t.at("gain").get<double>();
  g.top_fraction = token_gain.at("top_fraction").get<double>();
  g.top_share = t.at("top_share").get<double>();
  if (avg.contains("novel") && !avg.at("novel").at("top_share").is_null()) {
    g.novel_top_share = avg.at("novel").at("top_share").get<double>();
  }
  return g;
}

}  // namespace btx
