// `dense`: the compute-matched baseline. The seed keeps training on the balanced mixture of all
// training domains for as many tokens as the experts used in total (plus --extra-tokens, e.g. a
// routed model's finetuning), so every method is compared at the same training compute.
// `--match experts+finetune` adds the run's [finetune] budget: the compute of btx / upcycle.
// By default it trains "wider", as BTM's compute-matched baseline does: the N experts' batches
// side by side (one batch N times larger) for as many steps as one expert took; "longer" keeps
// the experts' batch for N times the steps instead.
#include <spdlog/spdlog.h>

#include "btx/data/shards.h"
#include "btx/merge/method.h"
#include "btx/train/trainer.h"
#include "btx/util/error.h"

namespace btx {

MergeMethod dense_method() {
  MergeMethod m;
  m.expert_modes = {ExpertMode::kAll, ExpertMode::kFfn,
                    ExpertMode::kFlexolmo};  // any experts of one shape
  m.name = "dense";
  m.description =
      "the seed trained further on the balanced mixture for the experts' total tokens: the "
      "compute-matched dense baseline";
  m.paper = "Li et al. 2022, Branch-Train-Merge (arXiv:2208.03306), the TRANSFORMER-LM baseline";
  m.params = {
      choice_param("match", "experts", {"experts", "experts+finetune"},
                   "experts: the experts' tokens; experts+finetune: plus the run's [finetune] "
                   "budget (what btx and upcycle spend)"),
      integer_param("extra-tokens", "0", "tokens added on top", 0),
      choice_param("schedule", "wider", {"wider", "longer"},
                   "wider: as many steps as one expert with the experts' batches side by side "
                   "(BTM's protocol: the dense model has all the experts' devices); longer: the "
                   "experts' batch for N times the steps"),
  };
  m.trains = true;
  m.from_experts = false;
  m.build = [](const MergeContext& ctx, const fs::path& out) {
    const int64_t extra = ctx.params.integer("extra-tokens");
    const TrainConfig& ft = ctx.run.config().finetune;
    const int64_t finetune_tokens =
        ctx.params.text("match") == "experts+finetune" ? ft.steps * ft.tokens_per_step() : 0;
    int64_t matched = extra + finetune_tokens;
    nlohmann::json per_expert = nlohmann::json::object();
    for (const auto& e : ctx.experts) {
      matched += e.tokens;
      per_expert[e.name] = e.tokens;
    }
    TrainConfig t = ctx.run.config().experts.train;
    if (ctx.params.text("schedule") == "wider")
      t.batch_size *= static_cast<int64_t>(ctx.experts.size());
    const int64_t per_step = t.tokens_per_step();
    t.steps = (matched + per_step - 1) / per_step;
    t.domain_weights.clear();  // the balanced mixture of every training domain
    BTX_CHECK(t.steps >= 1, "dense baseline: the experts used no tokens");
    spdlog::info("dense baseline: {} tokens to match ({} steps of {} sequences of {} tokens)",
                 matched, t.steps, t.batch_size * t.grad_accum, t.seq_len);
    TrainJob job = run_train_job(ctx.run, ctx.output_name, out, t, "dense/" + ctx.output_name);
    job.init_from = ctx.run.seed();
    job.resume = ctx.resume;
    const TrainResult r = train(job);
    BTX_CHECK(r.finished || r.skipped,
              "dense baseline stopped before its last step; run the "
              "merge again with --resume");
    return nlohmann::json{{"kind", "checkpoint"},        {"matched_tokens", matched},
                          {"expert_tokens", per_expert}, {"finetune_tokens", finetune_tokens},
                          {"extra_tokens", extra},       {"schedule", ctx.params.text("schedule")},
                          {"batch_size", t.batch_size},  {"steps", t.steps},
                          {"tokens", t.steps * per_step}};
  };
  return m;
}

}  // namespace btx
