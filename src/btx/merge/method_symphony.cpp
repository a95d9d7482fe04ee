// `symphony`: one MoE from experts that do not share a seed (Symphony-MoE; Wang et al. 2025,
// "Symphony-MoE: Harmonizing Disparate Pre-trained Models into a Coherent Mixture-of-Experts",
// arXiv:2509.18542). BTX needs its experts branched from one seed: their shared layers are
// averaged, which only makes sense where the experts still agree on what each dimension of the
// residual stream and each neuron means (BTM's mode-connectivity argument). Experts of another
// seed (another run's, or checkpoints made elsewhere of the same shape) are first aligned to an
// anchor expert, training-free, on calibration text (merge/neuron_align.h): their residual
// stream permuted to the anchor's dimensions, then each layer's FFN neurons to the anchor's
// (each an exact optimal assignment of the activations' correlations). The shared layers are
// then fused as the paper does: attention by spherical interpolation (merge/slerp.h), norms and
// embeddings averaged; the experts' FFNs become the MoE's experts, and a new router is trained
// in `btx finetune`, as in BTX. `--align no` merges the same experts as plain BTX would: the
// row that shows what the alignment buys. All experts are held in memory while aligning.
#include <spdlog/spdlog.h>

#include "btx/merge/method.h"
#include "btx/merge/moe_build.h"
#include "btx/merge/neuron_align.h"
#include "btx/merge/slerp.h"
#include "btx/model/param_roles.h"
#include "btx/run/experts.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/text.h"

namespace btx {

namespace {

// A path a parameter names: relative to the run folder when it is there, else as given.
fs::path resolve_path(const Run& run, const std::string& given, const std::string& param) {
  const fs::path p(given);
  if (p.is_relative() && fs::exists(run.root / p)) return fs::absolute(run.root / p);
  BTX_CHECK(fs::exists(p), "--{} '{}': no such folder (looked in {} and in the current folder)",
            param, given, run.root.string());
  return fs::absolute(p);
}

// The experts merged: the run's own, with those --take names replaced by another seed's.
std::vector<MergeExpert> symphony_experts(const Run& run, const ParamValues& params,
                                          std::vector<MergeExpert> own) {
  std::vector<std::string> take = split_text(params.text("take"), ',');
  if (take.empty()) {  // every second expert of the run
    for (size_t i = 1; i < own.size(); i += 2) take.push_back(own[i].name);
  }
  std::vector<std::string> names;
  for (const auto& e : own) names.push_back(e.name);
  std::vector<MergeExpert> from_run;
  if (params.has("from"))
    from_run = trained_experts(RunDir{resolve_path(run, params.text("from"), "from")});
  const ModelConfig shape = load_model_config(own.front().dir);
  for (const auto& entry : take) {
    const auto eq = entry.find('=');
    const std::string name = entry.substr(0, eq);
    auto slot = std::find_if(own.begin(), own.end(), [&](const auto& e) { return e.name == name; });
    BTX_CHECK(slot != own.end(), "--take '{}': the run has no expert '{}' (its experts: {})", entry,
              name, fmt::join(names, ", "));
    MergeExpert e{name};
    if (eq != std::string::npos) {  // a checkpoint folder made elsewhere
      e.dir = resolve_path(run, entry.substr(eq + 1), "take");
      BTX_CHECK(is_checkpoint(e.dir),
                "--take '{}': {} is not a checkpoint folder (config.json + "
                "model.safetensors)",
                entry, e.dir.string());
      if (const auto state = load_train_state(e.dir)) e.tokens = state->tokens;
    } else {
      BTX_CHECK(params.has("from"),
                "--take '{}': name the run it comes from with --from, or its folder as {}=DIR",
                entry, name);
      auto it = std::find_if(from_run.begin(), from_run.end(),
                             [&](const auto& f) { return f.name == name; });
      BTX_CHECK(it != from_run.end(), "--take '{}': --from {} has no expert '{}'", entry,
                params.text("from"), name);
      e = *it;
    }
    const std::string diff = model_config_difference(shape, load_model_config(e.dir));
    BTX_CHECK(diff.empty(), "--take '{}': {} differs in shape from the run's experts ({})", entry,
              e.dir.string(), diff);
    *slot = e;
  }
  return own;
}

// A copy of `m`'s weights in a new model.
CausalLM copy_model(CausalLM& m) {
  CausalLM out(m->config());
  torch::NoGradGuard no_grad;
  const auto src = m->named_parameters();
  for (auto& p : out->named_parameters()) p.value().copy_(src[p.key()]);
  return out;
}

// The mean correlation of matched dimensions: row i with column perm[i] (the identity: as the
// models come). After the expert's dimensions are permuted by `perm`, that is its diagonal.
double mean_matched(const torch::Tensor& corr, const std::vector<int64_t>& perm = {}) {
  if (perm.empty()) return corr.diagonal().mean().item<double>();
  return corr.gather(1, torch::tensor(perm, torch::kInt64).unsqueeze(1)).mean().item<double>();
}

// The shared layers of the aligned models, fused: attention on the sphere, everything else
// (norms, embeddings, the LM head) averaged. The FFNs are the anchor's (the MoE does not use
// them).
CausalLM fuse_shared(std::vector<CausalLM>& models, size_t anchor) {
  CausalLM out = copy_model(models[anchor]);
  torch::NoGradGuard no_grad;
  std::vector<torch::OrderedDict<std::string, torch::Tensor>> params;
  for (auto& m : models) params.push_back(m->named_parameters());
  for (auto& p : out->named_parameters()) {
    const ParamRole role = param_role(p.key());
    if (role == ParamRole::kFfn) continue;
    std::vector<torch::Tensor> all;
    for (const auto& ps : params) all.push_back(ps[p.key()]);
    p.value().copy_(role == ParamRole::kAttention ? slerp_all(all)
                                                  : torch::stack(all).to(torch::kFloat64).mean(0));
  }
  return out;
}

nlohmann::json build_symphony(const MergeContext& ctx, const fs::path& out) {
  const auto& experts = ctx.experts;
  size_t anchor = 0;
  if (ctx.params.has("anchor")) {
    const auto it = std::find_if(experts.begin(), experts.end(), [&](const auto& e) {
      return e.name == ctx.params.text("anchor");
    });
    BTX_CHECK(it != experts.end(), "--anchor '{}': no such expert (the experts: {})",
              ctx.params.text("anchor"), fmt::join(ctx.expert_names(), ", "));
    anchor = static_cast<size_t>(it - experts.begin());
  }
  auto slots = expert_moe_slots(ctx, /*from_seed=*/false);
  nlohmann::json record;
  if (!ctx.params.flag("align")) {
    record = build_moe(ctx, ctx.uniform_inputs(), slots, moe_options(ctx, ctx.output_name), out);
    record["symphony"] = {{"align", false}};
    return record;
  }
  // Calibration text: held-out windows of every training domain.
  MoeSlot all{"calibration", {}, ctx.run.config().corpus.domains};
  const torch::Tensor windows =
      slot_heldout_windows(ctx, all, ctx.params.integer("calibration-windows"),
                           ctx.run.config().experts.train.seq_len, "symphony's alignment");
  std::vector<CausalLM> models;
  for (const auto& e : experts) models.push_back(load_model(e.dir));
  nlohmann::json aligned = nlohmann::json::array();
  const std::string& anchor_seed = experts[anchor].seed_sha256;
  for (size_t i = 0; i < experts.size(); ++i) {
    // Experts branched from the anchor's seed already share its stream and neurons.
    if (i == anchor || (!anchor_seed.empty() && experts[i].seed_sha256 == anchor_seed)) continue;
    // Each correlation is computed once: what the permutation makes of it is read off it.
    torch::Tensor corr;
    const auto perm = align_residual_stream(models[anchor], models[i], windows, &corr);
    const double before = mean_matched(corr), after = mean_matched(corr, perm);
    std::vector<torch::Tensor> ffn;
    const auto neurons = align_ffn_neurons(models[anchor], models[i], windows, &ffn);
    std::vector<double> ffn_before, ffn_after;
    for (size_t l = 0; l < ffn.size(); ++l) {
      ffn_before.push_back(mean_matched(ffn[l]));
      ffn_after.push_back(mean_matched(ffn[l], neurons[l]));
    }
    int64_t moved = 0;
    for (size_t d = 0; d < perm.size(); ++d) moved += perm[d] != static_cast<int64_t>(d);
    spdlog::info(
        "symphony: expert '{}' aligned to '{}': residual correlation {:.3f} -> {:.3f} "
        "({} of {} dimensions moved)",
        experts[i].name, experts[anchor].name, before, after, moved, perm.size());
    const fs::path dir = out / "aligned" / experts[i].name;
    save_checkpoint(dir, {&models[i]});
    slots[i].checkpoint = dir;
    aligned.push_back({{"expert", experts[i].name},
                       {"residual_correlation", {{"before", before}, {"after", after}}},
                       {"residual_dims_moved", moved},
                       {"ffn_correlation", {{"before", ffn_before}, {"after", ffn_after}}}});
  }
  const fs::path shared = out / "fused-shared";
  CausalLM fused = fuse_shared(models, anchor);
  save_checkpoint(shared, {&fused});
  models.clear();
  record = build_moe(ctx, {{shared, 1.0}}, slots, moe_options(ctx, ctx.output_name), out);
  fs::remove_all(shared);
  fs::remove_all(out / "aligned");
  record["symphony"] = {{"align", true}, {"anchor", experts[anchor].name}, {"aligned", aligned}};
  return record;
}

}  // namespace

MergeMethod symphony_method() {
  MergeMethod m;
  m.name = "symphony";
  m.router = mixtral_router;
  m.description =
      "one MoE from experts that need not share a seed (another run's, or checkpoints of the "
      "same shape): each aligned to an anchor (residual stream and FFN neurons permuted by their "
      "activations' correlation), attention fused by slerp, norms and embeddings averaged, a new "
      "router (finetune it as btx)";
  m.paper =
      "Wang et al. 2025, Symphony-MoE: Harmonizing Disparate Pre-trained Models into a Coherent "
      "Mixture-of-Experts (arXiv:2509.18542)";
  m.params = moe_params("random");
  m.params.push_back(
      text_param("from",
                 "another run whose experts --take names (a path relative to the run folder, or "
                 "to the current one)"));
  m.params.push_back(
      text_param("take",
                 "the experts replaced by another seed's: NAME (the --from run's expert NAME) or "
                 "NAME=DIR (a checkpoint folder), comma-separated (default: every second expert)"));
  m.params.push_back(choice_param("align", "yes", {"yes", "no"},
                                  "align the experts of other seeds to the anchor and fuse the "
                                  "shared layers (no: average them as plain BTX does)"));
  m.params.push_back(text_param("anchor",
                                "the expert the others are aligned to (default: the "
                                "first)"));
  m.params.push_back(integer_param("calibration-windows", "32",
                                   "held-out windows (of all training domains) the alignment "
                                   "correlates activations on",
                                   1));
  m.check_params = [](const ParamValues& p) {
    BTX_CHECK(p.has("from") || p.has("take"),
              "symphony needs experts of another seed: --from RUN (and --take NAMES), or --take "
              "NAME=DIR");
  };
  m.experts = symphony_experts;
  m.build = build_symphony;
  return m;
}

}  // namespace btx
