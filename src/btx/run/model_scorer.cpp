#include "btx/run/model_scorer.h"

#include <limits>

#include "btx/cluster/cluster_model.h"
#include "btx/eval/ensemble.h"
#include "btx/model/moe.h"
#include "btx/model/router.h"
#include "btx/util/device.h"
#include "btx/util/error.h"

namespace btx {

namespace {
// Tag routing at evaluation: each domain's text goes to the expert trained on it; a domain no
// expert trained on goes to the expert with the lowest loss on its held-out text.
class TagScorer : public ModelScorer {
 public:
  TagScorer(CausalLM model, std::map<std::string, int64_t> routes, std::vector<std::string> names)
      : ModelScorer(std::move(model)), routes_(std::move(routes)), names_(std::move(names)) {}
  torch::Tensor token_nll(const torch::Tensor& tokens) override {
    BTX_CHECK(chosen_ >= 0, "tag routing: no domain set before scoring");
    return ModelScorer::token_nll(tokens);
  }
  void begin_domain(const std::string& domain, const Heldout& heldout) override {
    torch::NoGradGuard no_grad;
    auto it = routes_.find(domain);
    if (it != routes_.end()) {
      chosen_ = it->second;
      by_ = "label";
    } else {
      auto windows = heldout(16);
      BTX_CHECK(windows.size(0) >= 1,
                "tag routing: domain '{}' has no expert and no held-out text to pick one by",
                domain);
      double best = std::numeric_limits<double>::infinity();
      for (int64_t e = 0; e < model()->config().num_local_experts; ++e) {
        force_experts(model(), torch::tensor({e}));
        const double loss = ModelScorer::token_nll(windows).mean().item<double>();
        if (loss < best) {
          best = loss;
          chosen_ = e;
        }
      }
      by_ = "held-out loss";
    }
    force_experts(model(), torch::tensor({chosen_}));
  }
  nlohmann::json domain_info() const override {
    if (chosen_ < 0) return nullptr;
    const auto i = static_cast<size_t>(chosen_);
    return {{"expert", i < names_.size() ? names_[i] : std::to_string(chosen_)},
            {"chosen_by", by_}};
  }

 private:
  std::map<std::string, int64_t> routes_;
  std::vector<std::string> names_;
  int64_t chosen_ = -1;
  std::string by_;
};

// Branch-Train-Stitch: the hub's prediction after the stitched forward; per domain, the stitches'
// mean gate weights over the hub and each expert (what the hub took from whom).
class StitchScorer : public Scorer {
 public:
  StitchScorer(StitchedLM model, std::vector<std::string> names)
      : model_(std::move(model)), names_(std::move(names)) {
    model_->eval();
  }
  torch::Tensor token_nll(const torch::Tensor& tokens) override {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> gates;
    auto nll = stitched_token_nll(model_, tokens, &gates);  // (B, T)
    if (gate_sums_.empty()) gate_sums_.assign(gates.size(), torch::Tensor());
    for (size_t k = 0; k < gates.size(); ++k) {
      auto sum = gates[k].to(torch::kFloat64).sum(torch::IntArrayRef{0, 1}).cpu();
      gate_sums_[k] = gate_sums_[k].defined() ? gate_sums_[k] + sum : sum;
    }
    gate_tokens_ += nll.numel();
    return nll;
  }
  int64_t params_total() const override { return model_->num_params(); }
  int64_t params_active() const override { return model_->num_params(); }  // every model runs
  int64_t flops_per_token(int64_t context) const override {
    return model_->flops_per_token(context);
  }
  int64_t max_context() const override { return model_->hub->config().max_sequence(); }
  void begin_domain(const std::string&, const Heldout&) override {
    gate_sums_.clear();
    gate_tokens_ = 0;
  }
  nlohmann::json domain_info() const override {
    if (gate_tokens_ == 0) return nullptr;
    nlohmann::json points = nlohmann::json::array();
    for (size_t k = 0; k < gate_sums_.size(); ++k) {
      const auto mean = gate_sums_[k] / static_cast<double>(gate_tokens_);
      nlohmann::json w = {{"hub", mean[0].item<double>()}};
      for (size_t i = 0; i < names_.size(); ++i)
        w[names_[i]] = mean[static_cast<int64_t>(i) + 1].item<double>();
      points.push_back({{"after_layer", model_->points()[k]}, {"mean_gate", w}});
    }
    return {{"stitches", points}};
  }

 private:
  StitchedLM model_;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> gate_sums_;  // per stitch point: (N+1) summed over tokens
  int64_t gate_tokens_ = 0;
};

}  // namespace

fs::path ensemble_cluster_model_path(const fs::path& run, const std::string& given) {
  const fs::path p(given);
  return p.is_relative() ? run / p : p;
}

torch::Tensor cluster_order(const ClusterModel& clusters, const std::vector<std::string>& experts,
                            const std::string& where) {
  std::vector<int64_t> order;
  for (const auto& e : experts) {
    const auto it = std::find(clusters.names.begin(), clusters.names.end(), e);
    BTX_CHECK(it != clusters.names.end(),
              "--cluster-model {}: no cluster is named '{}' (its clusters: {}); the cluster "
              "prior routes to experts trained on `btx cluster`'s domains, named as they are",
              where, e, fmt::join(clusters.names, ", "));
    order.push_back(it - clusters.names.begin());
  }
  BTX_CHECK(clusters.seed != nullptr,
            "--cluster-model {}: it embeds with {}; the cluster prior routes each position by "
            "its prefix, which needs a cluster model of the seed's hidden states (`btx cluster "
            "--embed seed`)",
            where, clusters.embed);
  return torch::tensor(order, torch::kInt64);
}

std::unique_ptr<Scorer> open_scorer(const ModelFolder& model) {
  switch (model.kind()) {
    case ModelKind::kCheckpoint: {
      CausalLM m = model.model();
      if (m->config().is_routed() && m->config().router().needs_labels) {
        std::vector<std::string> names;
        for (const auto& s : model.slots()) names.push_back(s.name);
        return std::make_unique<TagScorer>(m, model.domain_experts(), names);
      }
      // On the process's device (btx --device); tag-routed, stitched and posterior-averaged
      // models stay on the CPU.
      m->to(default_device());
      return std::make_unique<ModelScorer>(m);
    }
    case ModelKind::kEnsemble: {
      // The experts on the process's device; their mixture (and a cluster prior's seed) on the
      // CPU.
      for (CausalLM m : model.experts()) m->to(default_device());  // a handle: the same module
      auto scorer = std::make_unique<EnsembleScorer>(model.expert_names(), model.experts(),
                                                     model.ensemble_options());
      const EnsembleOptions& o = model.ensemble_options();
      if (o.prior == EnsemblePrior::kCluster) {
        // merged/<name>/ is in its run: a relative --cluster-model is the run's.
        const fs::path run = model.path().parent_path().parent_path();
        auto clusters = std::make_shared<ClusterModel>(
            ClusterModel::load(ensemble_cluster_model_path(run, o.cluster_model)));
        const auto order = cluster_order(*clusters, model.expert_names(), o.cluster_model);
        const double temperature = o.temperature;
        scorer->set_context_router(
            [clusters, order, temperature](const torch::Tensor& inputs) {
              return clusters->context_log_weights(inputs, temperature).index_select(0, order);
            },
            [clusters](int64_t context) { return clusters->seed->flops_per_token(context); },
            clusters->seed ? clusters->seed->num_params() : 0);
      }
      return scorer;
    }
    case ModelKind::kStitched:
      return std::make_unique<StitchScorer>(model.stitched(), model.expert_names());
    case ModelKind::kPosteriorAverage: {
      const EnsembleOptions& o = model.ensemble_options();
      return std::make_unique<PosteriorAverageScorer>(model.expert_names(), model.experts(),
                                                      o.alpha, o.prior_windows);
    }
  }
  fail("{}: unknown model kind", model.path().string());
}

}  // namespace btx
