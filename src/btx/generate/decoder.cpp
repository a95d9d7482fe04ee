#include "btx/generate/decoder.h"

#include "btx/model/router.h"
#include "btx/run/model_folder.h"
#include "btx/train/checkpoint.h"
#include "btx/util/device.h"
#include "btx/util/error.h"

namespace btx {

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

torch::Tensor Decoder::sequence_scores(const std::vector<int32_t>& seq) {
  torch::NoGradGuard no_grad;
  reset();
  std::vector<torch::Tensor> rows;
  std::vector<int32_t> prefix;
  for (int32_t t : seq) {
    prefix.push_back(t);
    rows.push_back(next_scores(prefix).to(torch::kFloat64));
  }
  reset();
  return torch::stack(rows);
}

torch::Tensor ModelDecoder::sequence_scores(const std::vector<int32_t>& seq) {
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> x(seq.begin(), seq.end());
  return model_->forward(torch::tensor(x, torch::kInt64).view({1, -1}))[0];
}

std::string ModelDecoder::describe() const {
  const auto& c = model_->config();
  std::string kind =
      c.is_smear() ? "SMEAR"
      : c.is_moe() ? fmt::format("MoE ({} experts, {} routing)", c.num_local_experts, c.router_mode)
                   : "dense";
  if (c.has_attention_experts()) {
    kind += fmt::format(" with {} attention experts (BAM)", c.num_attention_experts);
  }
  return fmt::format("{} model, {}", kind, cached_ ? "KV cache" : "recomputed for every token");
}

std::unique_ptr<BatchDecoder> ModelDecoder::batch_decoder() const {
  return cached_ ? std::make_unique<ModelBatchDecoder>(model_) : nullptr;
}

// ---- StitchedDecoder ---------------------------------------------------------------------

namespace {
// Branch-Train-Stitch: the hub and every expert run the whole sequence again for each token
// (the stitches mix their residual streams at every position; no KV cache is kept for them).
class StitchedDecoder : public Decoder {
 public:
  explicit StitchedDecoder(StitchedLM model) : model_(std::move(model)) { model_->eval(); }
  torch::Tensor next_scores(const std::vector<int32_t>& seq) override {
    return sequence_scores(seq)[-1];
  }
  void reset() override {}
  torch::Tensor sequence_scores(const std::vector<int32_t>& seq) override {
    torch::NoGradGuard no_grad;
    BTX_CHECK(!seq.empty(), "decoder: no token to read");
    const std::vector<int64_t> x(seq.begin(), seq.end());
    return model_->forward(torch::tensor(x, torch::kInt64).view({1, -1}))[0];
  }
  int64_t context() const override { return model_->hub->config().max_sequence(); }
  int64_t vocab_size() const override { return model_->hub->config().vocab_size; }
  std::string describe() const override {
    return fmt::format(
        "Branch-Train-Stitch model (the seed and {} experts, stitched after layers {}), "
        "recomputed for every token",
        model_->num_experts(), fmt::join(model_->points(), ", "));
  }

 private:
  StitchedLM model_;
};
}  // namespace

// ---- EnsembleDecoder ---------------------------------------------------------------------

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
  return posterior_json(names_, posterior());
}

std::string EnsembleDecoder::describe() const {
  return fmt::format("ensemble of {} experts, posterior updated per token{}, {}", experts_.size(),
                     top_k_ > 0 && top_k_ < static_cast<int64_t>(experts_.size())
                         ? fmt::format(" (top-{})", top_k_)
                         : "",
                     cached_ ? "KV caches" : "recomputed for every token");
}

std::unique_ptr<Decoder> open_decoder(const ModelFolder& model, bool use_cache) {
  const fs::path& dir = model.path();
  if (is_checkpoint(dir)) {
    // On the process's device (btx --device); stitched models stay on the CPU.
    CausalLM m = model.model();
    m->to(default_device());
    return std::make_unique<ModelDecoder>(m, use_cache);
  }
  BTX_CHECK(model.merged(),
            "{} is neither a checkpoint (model.safetensors + config.json) nor a merged "
            "description (merge.json)",
            dir.string());
  if (model.kind() == ModelKind::kStitched)
    return std::make_unique<StitchedDecoder>(model.stitched());
  const std::string kind = name_of(model.kind());
  BTX_CHECK(model.kind() == ModelKind::kEnsemble,
            "{} is a {} description ({}): it is one dense model per target domain, built from "
            "that domain's held-out text, so it has no single model to generate from; generate "
            "from the ensemble or an expert instead",
            dir.string(), model.method().empty() ? kind : model.method(), kind);
  // The experts on the process's device; their mixture on the CPU.
  for (CausalLM m : model.experts()) m->to(default_device());  // a handle: the same module
  return std::make_unique<EnsembleDecoder>(model.expert_names(), model.experts(),
                                           model.ensemble_options().top_k, use_cache);
}

}  // namespace btx
