// `flexolmo`: FlexOlmo's merge (Shi et al. 2025, arXiv:2507.07024). Experts trained with
// [experts] mode = "flexolmo" (run/flexolmo.h) are two-expert MoEs that keep the seed's layers
// and its FFN as a frozen anchor; the merge concatenates them: slot 0 the anchor, slot 1 + i
// expert i's own FFN, each router's rows the anchor's and each expert's learned row. Nothing is
// averaged (the shared tensors are the seed's in every expert, which is checked) and nothing
// trains: every expert learned its row against the same anchor, so the result routes per token
// without joint training. `btx finetune --train router` may still tune the router on the mixture.
#include <fmt/format.h>

#include <optional>
#include <regex>

#include "btx/io/safetensors.h"
#include "btx/merge/method.h"
#include "btx/model/moe.h"
#include "btx/run/experts.h"
#include "btx/run/flexolmo.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {
const std::regex kExpertFfn(
    R"(model\.layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.(w\d)\.weight)");

// The merged model's tensors from the experts' two-expert models: readers[i] is expert i's.
class FlexolmoMerge {
 public:
  FlexolmoMerge(const MergeContext& ctx) : ctx_(ctx) {
    for (const auto& e : ctx.experts) readers_.emplace_back(e.dir / "model.safetensors");
    expert_config_ = load_model_config(ctx.experts.front().dir);
    BTX_CHECK(expert_config_.is_moe() && expert_config_.num_local_experts == 2,
              "{}: a flexolmo expert is a two-expert mixtral model, not {} with {} experts",
              ctx.experts.front().dir.string(), name_of(expert_config_.model_type),
              expert_config_.num_local_experts);
    seed_.emplace(ctx.run.seed() / "model.safetensors");
  }

  const ModelConfig& expert_config() const { return expert_config_; }

  TensorLayout layout() const {
    TensorLayout out;
    const int64_t n = static_cast<int64_t>(readers_.size());
    for (const auto& [name, info] : readers_.front().tensors()) {
      std::smatch m;
      if (std::regex_match(name, m, kExpertFfn)) {
        if (std::stoll(m[2].str()) != kFlexolmoAnchor) continue;
        for (int64_t slot = 0; slot <= n; ++slot) {
          out[moe_ffn_name(std::stoll(m[1].str()), slot, m[3].str())] = {info.scalar_type(),
                                                                         info.shape};
        }
      } else if (name.find(".block_sparse_moe.gate.") != std::string::npos) {
        out[name] = {info.scalar_type(), {n + 1, info.shape.at(1)}};
      } else {
        out[name] = {info.scalar_type(), info.shape};
      }
    }
    return out;
  }

  torch::Tensor produce(const std::string& name) const {
    std::smatch m;
    if (std::regex_match(name, m, kExpertFfn)) {
      const int64_t slot = std::stoll(m[2].str());
      if (slot == kFlexolmoAnchor) return same_in_every_expert(name);
      return readers_.at(static_cast<size_t>(slot - 1))
          .read(moe_ffn_name(std::stoll(m[1].str()), kFlexolmoOwn, m[3].str()));
    }
    if (name.find(".block_sparse_moe.gate.") != std::string::npos) {
      // Row 0 the anchor's (the same in every expert), then each expert's own: one read each.
      std::vector<torch::Tensor> rows(readers_.size() + 1);
      for (size_t i = 0; i < readers_.size(); ++i) {
        const auto w = readers_[i].read(name);
        if (i == 0) rows[0] = w[kFlexolmoAnchor];
        BTX_CHECK(torch::equal(w[kFlexolmoAnchor], rows[0]),
                  "{}: expert '{}' has another anchor router row than '{}' (flexolmo experts "
                  "keep the same frozen anchor)",
                  name, ctx_.experts[i].name, ctx_.experts.front().name);
        rows[i + 1] = w[kFlexolmoOwn];
      }
      return torch::stack(rows);
    }
    // A shared tensor: the seed's, unchanged in every expert.
    auto t = same_in_every_expert(name);
    if (seed_->contains(name)) {
      BTX_CHECK(torch::equal(t, seed_->read(name)),
                "{}: the experts changed the seed's '{}' (flexolmo experts keep every shared "
                "layer frozen)",
                ctx_.experts.front().dir.string(), name);
    }
    return t;
  }

 private:
  // The tensor `name`, which every expert must hold bitwise equal.
  torch::Tensor same_in_every_expert(const std::string& name) const {
    auto t = readers_.front().read(name);
    for (size_t i = 1; i < readers_.size(); ++i) {
      BTX_CHECK(torch::equal(readers_[i].read(name), t),
                "{}: experts '{}' and '{}' differ where flexolmo experts stay the seed's", name,
                ctx_.experts.front().name, ctx_.experts[i].name);
    }
    return t;
  }

  const MergeContext& ctx_;
  std::vector<SafetensorsReader> readers_;
  std::optional<SafetensorsReader> seed_;
  ModelConfig expert_config_;
};
}  // namespace

MergeMethod flexolmo_method() {
  MergeMethod m;
  m.name = "flexolmo";
  m.router = [](const auto&) -> const RouterTraits& {
    return router_traits(ModelType::kMixtral, "top-k", "--method");
  };
  m.study_finetune = "";  // its router rows are trained already
  m.expert_modes = {ExpertMode::kFlexolmo};
  m.description =
      "one MoE of flexolmo-mode experts: the seed's frozen FFN (the anchor) and each expert's "
      "own FFN, their router rows concatenated, nothing averaged or jointly trained";
  m.paper = "Shi et al. 2025, FlexOlmo (arXiv:2507.07024)";
  m.params = {
      integer_param("top-k", "2", "experts per token (the anchor is one of them)", 1),
      real_param("aux-loss", "0.01", "load-balancing weight, if it is finetuned", 0),
      real_param("z-loss", "0", "router z-loss weight, if it is finetuned", 0),
  };
  m.build = [](const MergeContext& ctx, const fs::path& out) {
    const FlexolmoMerge merge(ctx);
    ModelConfig moe = merge.expert_config();
    moe.num_local_experts = static_cast<int64_t>(ctx.experts.size()) + 1;
    moe.num_experts_per_tok = ctx.params.integer("top-k");
    BTX_CHECK(moe.num_experts_per_tok <= moe.num_local_experts,
              "--top-k {} must be at most the number of experts with the anchor ({})",
              moe.num_experts_per_tok, moe.num_local_experts);
    moe.router_aux_loss_coef = ctx.params.real("aux-loss");
    moe.router_z_loss_coef = ctx.params.real("z-loss");
    moe.validate("merged flexolmo config");
    fs::create_directories(out);
    save_safetensors_streaming(out / "model.safetensors", merge.layout(), {{"format", "pt"}},
                               [&](const std::string& name) { return merge.produce(name); });
    write_file_atomic(out / "config.json", model_config_to_json(moe).dump(2));
    nlohmann::json experts = nlohmann::json::array();
    experts.push_back({{"name", "seed"}, {"domains", ctx.run.config().corpus.domains}});
    for (const auto& e : ctx.experts) {
      experts.push_back(
          {{"name", e.name}, {"domains", find_expert(ctx.run, e.name).trained_domains()}});
    }
    return nlohmann::json{
        {"kind", "checkpoint"}, {"moe_experts", experts}, {"router_init", "flexolmo"}};
  };
  return m;
}

}  // namespace btx
