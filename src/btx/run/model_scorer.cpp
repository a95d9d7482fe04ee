#include "btx/run/model_scorer.h"

#include <limits>

#include "btx/eval/ensemble.h"
#include "btx/model/moe.h"
#include "btx/model/router.h"
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

}  // namespace

std::unique_ptr<Scorer> open_scorer(const ModelFolder& model) {
  switch (model.kind()) {
    case ModelKind::kCheckpoint: {
      CausalLM m = model.model();
      if (m->config().is_routed() && m->config().router().needs_labels) {
        std::vector<std::string> names;
        for (const auto& s : model.slots()) names.push_back(s.name);
        return std::make_unique<TagScorer>(m, model.domain_experts(), names);
      }
      return std::make_unique<ModelScorer>(m);
    }
    case ModelKind::kEnsemble:
      return std::make_unique<EnsembleScorer>(model.expert_names(), model.experts(),
                                              model.ensemble_options());
    case ModelKind::kPosteriorAverage: {
      const EnsembleOptions& o = model.ensemble_options();
      return std::make_unique<PosteriorAverageScorer>(model.expert_names(), model.experts(),
                                                      o.alpha, o.prior_windows);
    }
  }
  fail("{}: unknown model kind", model.path().string());
}

}  // namespace btx
