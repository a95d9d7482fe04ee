#include "btx/merge/moe_build.h"

#include <spdlog/spdlog.h>

#include <map>
#include <regex>

#include "btx/data/shards.h"
#include "btx/io/safetensors.h"
#include "btx/model/attention_experts.h"
#include "btx/model/moe.h"
#include "btx/model/router.h"
#include "btx/run/experts.h"
#include "btx/run/run_dir.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {
const std::regex kDenseFfn(R"(model\.layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight)");
const std::regex kMoeExpert(
    R"(model\.layers\.(\d+)\.(block_sparse_moe|smear)\.experts\.(\d+)\.(w1|w2|w3)\.weight)");
const std::regex kRouter(R"(model\.layers\.(\d+)\.(block_sparse_moe|smear)\.gate\.weight)");
const std::regex kNullGate(R"(model\.layers\.(\d+)\.block_sparse_moe\.null_gate\.weight)");
const std::regex kContextMix(R"(model\.layers\.(\d+)\.block_sparse_moe\.context_mix)");
const std::regex kBaseline(R"(model\.layers\.(\d+)\.block_sparse_moe\.baseline\.weight)");
// An attention's tensors: projections, their biases (qwen2, attention_bias), qwen3's q/k norms.
const std::regex kAttention(
    R"(model\.layers\.(\d+)\.self_attn\.((?:q|k|v|o)_proj\.(?:weight|bias)|(?:q|k)_norm\.weight))");
const std::regex kAttentionExpert(
    R"(model\.layers\.(\d+)\.self_attn\.experts\.(\d+)\.((?:q|k|v|o)_proj\.(?:weight|bias)|(?:q|k)_norm\.weight))");
const std::regex kAttentionRouter(R"(model\.layers\.(\d+)\.self_attn\.gate\.weight)");

}  // namespace

torch::Tensor slot_heldout_windows(const MergeContext& ctx, const MoeSlot& slot, int64_t windows,
                                   int64_t seq_len, const std::string& what) {
  BTX_CHECK(!slot.domains.empty(), "{}: expert '{}' has no domains to take held-out text from",
            what, slot.name);
  std::vector<torch::Tensor> parts;
  const int64_t per = std::max<int64_t>(1, windows / static_cast<int64_t>(slot.domains.size()));
  for (const auto& d : slot.domains) {
    parts.push_back(domain_heldout_windows(ctx.run, d, per, seq_len));
  }
  auto out = torch::cat(parts);
  BTX_CHECK(out.size(0) >= 1, "{}: no held-out data for expert '{}' ({})", what, slot.name,
            fmt::join(slot.domains, ", "));
  return out;
}

namespace {

// Each layer's FFN inputs on each slot's held-out data with every token sent to its expert.
FfnInputStatistics slot_statistics(const MergeContext& ctx, CausalLM model,
                                   const std::vector<MoeSlot>& slots, int64_t windows, bool grams,
                                   const std::string& init) {
  const int64_t T = ctx.run.config().experts.train.seq_len;
  std::vector<torch::Tensor> data;
  std::vector<int64_t> forced;
  for (size_t j = 0; j < slots.size(); ++j) {
    data.push_back(slot_heldout_windows(ctx, slots[j], windows, T, init + " router init"));
    forced.push_back(static_cast<int64_t>(j));
  }
  return ffn_input_statistics(model, data, forced, T, grams);
}

// Sets each layer's router from its slot statistics: `centroid` makes row j the normalised mean
// FFN input of slot j's data; `ridge` the least-squares router of ridge_router_weights.
void init_router_from_domains(const MergeContext& ctx, CausalLM& model,
                              const std::vector<MoeSlot>& slots, const MoeBuildOptions& opts) {
  const bool ridge = opts.router_init == "ridge";
  const FfnInputStatistics st =
      slot_statistics(ctx, model, slots, opts.centroid_windows, ridge, opts.router_init);
  const std::vector<RoutedFfnImpl*> layers = routed_layers(model);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto& w = layers[i]->gate->weight;
    if (ridge) {
      w.copy_(ridge_router_weights(st.grams[i], st.sums[i], opts.ridge_lambda).to(w.dtype()));
      continue;
    }
    for (size_t j = 0; j < slots.size(); ++j) {
      auto mean = (st.sums[i][j] / static_cast<double>(st.counts[j])).to(torch::kFloat32);
      w[static_cast<int64_t>(j)].copy_(mean / mean.norm());
    }
  }
}
}  // namespace

torch::Tensor ridge_router_weights(const std::vector<torch::Tensor>& grams,
                                   const std::vector<torch::Tensor>& sums, double lambda) {
  BTX_CHECK(!grams.empty() && grams.size() == sums.size(),
            "ridge router: {} Gram matrices for {} slots", grams.size(), sums.size());
  BTX_CHECK(lambda >= 0, "ridge router: lambda {} is negative", lambda);
  auto g = grams.front().to(torch::kFloat64).clone();
  for (size_t j = 1; j < grams.size(); ++j) g += grams[j].to(torch::kFloat64);
  const int64_t C = g.size(0);
  // XᵀY: column j is the sum of slot j's inputs (its rows of Y are one-hot at j).
  auto xty = torch::stack(sums, 1).to(torch::kFloat64);  // (C, E)
  const double scale = g.diagonal().sum().item<double>() / static_cast<double>(C);
  BTX_CHECK(scale > 0, "ridge router: the hidden states are all zero");
  // λ relative to the mean eigenvalue of XᵀX, and never below a trace of it: XᵀX of fewer
  // tokens than dimensions is singular.
  const double ridge = std::max(lambda, 1e-10) * scale;
  auto a = g + ridge * torch::eye(C, torch::kFloat64);
  auto l = torch::linalg_cholesky(a);
  return torch::cholesky_solve(xty, l).t().contiguous().to(torch::kFloat32);  // (E, C)
}

Param router_init_param(const std::string& default_init) {
  return choice_param("router-init", default_init, {"random", "centroid", "ridge"},
                      "random (small normal) | centroid (each domain's mean hidden state) | ridge "
                      "(least-squares router from the hidden states to the expert labels, DUME)");
}

Param ridge_lambda_param() {
  return real_param("ridge-lambda", "0.01",
                    "ridge router init: λ relative to the mean eigenvalue of XᵀX", 0);
}

std::vector<MoeSlot> expert_moe_slots(const MergeContext& ctx, bool from_seed) {
  std::vector<MoeSlot> slots;
  for (const auto& e : ctx.experts) {
    slots.push_back({e.name, from_seed ? ctx.run.seed() : e.dir,
                     find_expert(ctx.run, e.name).trained_domains()});
  }
  return slots;
}

std::vector<Param> moe_params(const std::string& default_init) {
  return {
      integer_param("top-k", "2", "experts per token", 1),
      choice_param("router", "top-k", router_names(ModelType::kMixtral, /*learned_only=*/true),
                   router_help(ModelType::kMixtral, /*learned_only=*/true)),
      real_param("aux-loss", "0.01", "load-balancing weight alpha (0: none, experts may die)", 0),
      real_param("z-loss", "0", "router z-loss weight", 0),
      router_init_param(default_init),
      ridge_lambda_param(),
  };
}

MoeBuildOptions moe_options(const MergeContext& ctx, const std::string& tag) {
  MoeBuildOptions o;
  o.top_k = ctx.params.integer("top-k");
  o.router_mode = ctx.params.text("router");
  o.aux_loss = ctx.params.real("aux-loss");
  o.z_loss = ctx.params.real("z-loss");
  o.router_init = ctx.params.text("router-init");
  o.ridge_lambda = ctx.params.real("ridge-lambda");
  o.seed = derive_seed(ctx.run.config().seed, "router/" + tag);
  return o;
}

nlohmann::json build_moe(const MergeContext& ctx, const std::vector<WeightedCheckpoint>& shared,
                         const std::vector<MoeSlot>& slots, const MoeBuildOptions& opts,
                         const fs::path& out) {
  const CheckpointAverager avg(shared, out.string());
  const ModelConfig& dense = avg.config();
  BTX_CHECK(!dense.is_routed(),
            "{}: the checkpoints to mix are already {} models; btx mixes dense experts",
            shared.front().dir.string(), name_of(dense.model_type));
  BTX_CHECK(!dense.has_attention_experts(),
            "{}: the checkpoints to mix already have attention experts; btx mixes dense experts",
            shared.front().dir.string());
  BTX_CHECK(opts.model_type == ModelType::kMixtral || opts.model_type == ModelType::kSmear,
            "MoE build: model_type '{}' is not mixtral or smear", name_of(opts.model_type));
  const bool smear = opts.model_type == ModelType::kSmear;
  const std::string module = smear ? "smear" : "block_sparse_moe";
  ModelConfig moe = dense;
  moe.model_type = opts.model_type;
  moe.smear_expert_dropout = opts.expert_dropout;
  BTX_CHECK(!opts.attention_experts || !smear,
            "MoE build: attention experts need model_type mixtral, not smear");
  moe.num_attention_experts = opts.attention_experts ? static_cast<int64_t>(slots.size()) : 0;
  moe.num_local_experts = static_cast<int64_t>(slots.size());
  moe.num_experts_per_tok = opts.top_k;
  moe.router_mode = opts.router_mode;
  moe.router_aux_loss_coef = opts.aux_loss;
  moe.router_z_loss_coef = opts.z_loss;
  moe.num_null_experts = opts.null_experts;
  moe.router_context = opts.router_context;
  const RouterTraits& router = router_traits(moe.model_type, moe.router_mode, "--router");
  if (router.experts == ExpertsPerToken::kMerged) {
    moe.num_experts_per_tok = moe.num_local_experts;  // every expert is merged
  } else if (router.experts == ExpertsPerToken::kOne) {
    moe.num_experts_per_tok = 1;  // hash, tag and the gradient estimators pick one expert
  }
  BTX_CHECK(moe.num_experts_per_tok >= 1 && moe.num_experts_per_tok <= moe.num_local_experts,
            "--top-k {} must be between 1 and the number of experts ({})", opts.top_k,
            moe.num_local_experts);
  moe.validate("merged MoE config");

  // Each slot's FFN source, checked to be a dense checkpoint of the same shape.
  std::map<fs::path, SafetensorsReader> sources;
  for (const auto& s : slots) {
    if (sources.count(s.checkpoint)) continue;
    const ModelConfig c = load_model_config(s.checkpoint);
    BTX_CHECK(c == dense,
              "expert '{}' ({}) has a different architecture from {}: its FFN does "
              "not fit",
              s.name, s.checkpoint.string(), shared.front().dir.string());
    sources.emplace(s.checkpoint, SafetensorsReader(s.checkpoint / "model.safetensors"));
  }

  TensorLayout layout;
  for (const auto& [name, spec] : avg.layout()) {
    if (std::regex_match(name, kDenseFfn)) continue;
    if (opts.attention_experts && std::regex_match(name, kAttention)) continue;
    layout[name] = spec;
  }
  const auto f32 = torch::kFloat32;
  for (int64_t i = 0; i < dense.num_hidden_layers; ++i) {
    layout[fmt::format("model.layers.{}.{}.gate.weight", i, module)] = {
        f32, {moe.num_local_experts, dense.hidden_size}};
    if (router.training == RouterTraining::kPolicyGradient) {
      layout[fmt::format("model.layers.{}.{}.baseline.weight", i, module)] = {
          f32, {1, dense.hidden_size}};
    }
    if (moe.num_null_experts > 0) {
      layout[fmt::format("model.layers.{}.{}.null_gate.weight", i, module)] = {
          f32, {1, dense.hidden_size}};
    }
    if (moe.router_context) {
      layout[fmt::format("model.layers.{}.{}.context_mix", i, module)] = {f32, {1}};
    }
    for (int64_t j = 0; j < moe.num_local_experts; ++j) {
      for (const char* w : {"w1", "w2", "w3"}) {
        layout[fmt::format("model.layers.{}.{}.experts.{}.{}.weight", i, module, j, w)] =
            avg.layout().at(dense_ffn_name(i, w));
      }
    }
    for (const auto& [name, spec] : avg.layout()) {  // each attention tensor, per expert
      std::smatch m;
      if (!std::regex_match(name, m, kAttention) || std::stoll(m[1].str()) != i) continue;
      for (int64_t j = 0; j < moe.num_attention_experts; ++j) {
        layout[attention_expert_tensor(i, j, m[2].str())] = spec;
      }
    }
    if (moe.has_attention_experts()) {
      layout[attention_router_name(i)] = {f32, {moe.num_attention_experts, dense.hidden_size}};
    }
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(opts.seed);
  fs::create_directories(out);
  save_safetensors_streaming(
      out / "model.safetensors", layout, {{"format", "pt"}}, [&](const std::string& name) {
        std::smatch m;
        if (std::regex_match(name, m, kMoeExpert)) {
          const auto& slot = slots.at(std::stoul(m[3].str()));
          return sources.at(slot.checkpoint)
              .read(dense_ffn_name(std::stoll(m[1].str()), m[4].str()));
        }
        if (std::regex_match(name, m, kAttentionExpert)) {
          const auto& slot = slots.at(std::stoul(m[2].str()));
          return sources.at(slot.checkpoint)
              .read(fmt::format("model.layers.{}.self_attn.{}", m[1].str(), m[3].str()));
        }
        if (std::regex_match(name, kAttentionRouter)) {
          return torch::normal(0.0, dense.initializer_range,
                               {moe.num_attention_experts, dense.hidden_size}, gen);
        }
        if (std::regex_match(name, kContextMix)) return torch::full({1}, -2.0);
        if (std::regex_match(name, kBaseline) || std::regex_match(name, kNullGate)) {
          return torch::zeros({1, dense.hidden_size});
        }
        if (std::regex_match(name, m, kRouter)) {
          return torch::normal(0.0, dense.initializer_range,
                               {moe.num_local_experts, dense.hidden_size}, gen);
        }
        return avg.average(name);
      });
  write_file_atomic(out / "config.json", model_config_to_json(moe).dump(2));

  if (opts.router_init != "random") {
    CausalLM model = load_model(out);
    init_router_from_domains(ctx, model, slots, opts);
    TensorMap tensors;
    for (const auto& p : model->named_parameters()) tensors[p.key()] = p.value();
    save_safetensors(out / "model.safetensors", tensors, {{"format", "pt"}});
  }
  nlohmann::json experts = nlohmann::json::array();
  for (const auto& s : slots) experts.push_back({{"name", s.name}, {"domains", s.domains}});
  spdlog::info("{}: {} experts per layer{}, router {} (k {}), router init {}",
               smear ? "SMEAR" : "MoE", slots.size(),
               moe.has_attention_experts() ? " (FFN and attention)" : "", opts.router_mode,
               moe.num_experts_per_tok, opts.router_init);
  nlohmann::json recorded = {
      {"kind", "checkpoint"}, {"moe_experts", experts}, {"router_init", opts.router_init}};
  if (moe.has_attention_experts()) recorded["attention_experts"] = moe.num_attention_experts;
  if (moe.num_null_experts > 0) recorded["null_experts"] = moe.num_null_experts;
  if (moe.router_context) recorded["router_context"] = true;
  return recorded;
}

}  // namespace btx
