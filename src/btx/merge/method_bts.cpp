// `bts`: Branch-Train-Stitch (Zhang et al. 2025, "BTS: Harmonizing Specialized Experts into a
// Generalist LLM", arXiv:2502.00075). The seed becomes a hub, the trained experts run beside it,
// all frozen, joined every --stitch-every layers by stitch layers (model/stitch.h) that are the
// only weights trained: on the balanced mixture of the training domains with the run's
// [finetune] settings (the budget btx's finetuning spends, so the two compare at the same
// finetuning tokens). merged/<name>/ holds stitches.safetensors, merge.json naming the hub and the
// experts (checked by sha256 when it is opened) and metrics.jsonl of the stitch training, which
// is written in place as it goes (a merge that trains) and starts over if it was cut short. Every
// model runs every token: its inference cost is the ensemble's and more, stated beside its quality.
#include <spdlog/spdlog.h>

#include <chrono>
#include <fstream>

#include "btx/data/sampler.h"
#include "btx/data/shards.h"
#include "btx/merge/method.h"
#include "btx/train/adamw.h"
#include "btx/train/checkpoint.h"
#include "btx/util/device.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

struct StitchTraining {
  int64_t steps = 0, tokens = 0;
  double last_loss = 0;     // the mean over the last logging interval
  double seconds = 0;       // wall time of the steps
  std::vector<double> hub;  // the hub's mean gate at each stitch point, on the last batch
};

// Trains `model`'s stitches with AdamW on the mixture, as the trainer trains a model (warmup +
// cosine, clipping, accumulation), logging to `metrics`.
StitchTraining train_stitches(StitchedLM& model, const ShardSet& data, const TrainConfig& t,
                              uint64_t seed, const fs::path& metrics, const std::string& name) {
  t.validate(name);
  const torch::Device device = default_device();
  model->to(device);
  model->train();
  const auto params = model->stitch_parameters();
  std::vector<torch::Tensor> tensors;
  for (const auto& [n, p] : params) tensors.push_back(p);
  AdamW opt(params, AdamWOptions{t.beta1, t.beta2, t.eps, t.weight_decay});
  const MixtureSampler sampler(data, "train", {}, t.seq_len, seed);
  StitchTraining r;
  const auto start = std::chrono::steady_clock::now();
  double interval_loss = 0;
  int64_t interval_steps = 0;
  for (int64_t step = 0; step < t.steps; ++step) {
    opt.zero_grad();
    double loss_sum = 0;
    std::vector<torch::Tensor> gates;
    for (int64_t micro = 0; micro < t.grad_accum; ++micro) {
      const auto batch = sampler.batch(step * t.grad_accum + micro, t.batch_size);
      gates.clear();
      auto loss = stitched_token_nll(model, batch, &gates).mean();
      (loss / static_cast<double>(t.grad_accum)).backward();
      loss_sum += loss.item<double>();
    }
    if (t.grad_clip > 0) torch::nn::utils::clip_grad_norm_(tensors, t.grad_clip);
    const double lr = lr_at(step, t.steps, t.warmup_steps, t.lr, t.min_lr);
    opt.step(lr);
    const double loss = loss_sum / static_cast<double>(t.grad_accum);
    BTX_CHECK(std::isfinite(loss), "[{}] loss became {} at step {}: lower [finetune] lr (now {})",
              name, loss, step + 1, t.lr);
    r.steps = step + 1;
    r.tokens += t.tokens_per_step();
    interval_loss += loss;
    ++interval_steps;
    if (r.steps % t.log_every == 0 || r.steps == t.steps) {
      r.hub.clear();
      for (const auto& g : gates) r.hub.push_back(g.select(-1, 0).mean().item<double>());
      r.last_loss = interval_loss / static_cast<double>(interval_steps);
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::ofstream(metrics, std::ios::app)
          << nlohmann::json{{"step", r.steps},     {"steps", t.steps},
                            {"loss", r.last_loss}, {"lr", lr},
                            {"tokens", r.tokens},  {"hub_gate", r.hub},
                            {"seconds", r.seconds}}
                 .dump()
          << "\n";
      spdlog::info("[{}] step {}/{} | loss {:.4f} | lr {:.2e} | hub gate {:.2f}", name, r.steps,
                   t.steps, r.last_loss, lr, fmt::join(r.hub, " "));
      interval_loss = 0;
      interval_steps = 0;
    }
  }
  model->to(torch::kCPU);
  model->eval();
  return r;
}

}  // namespace

MergeMethod bts_method() {
  MergeMethod m;
  m.name = "bts";
  m.description =
      "Branch-Train-Stitch: the seed as a hub and the frozen experts run side by side, joined "
      "every few layers by trained stitch layers (experts into hub: a softmax gate over the hub "
      "and projected expert states; hub into experts: a sigmoid-gated projection); every model "
      "runs every token";
  m.paper =
      "Zhang et al. 2025, BTS: Harmonizing Specialized Experts into a Generalist LLM "
      "(arXiv:2502.00075)";
  m.params = {
      integer_param("stitch-every", "2",
                    "a stitch after every this many layers (and always after the last)", 1),
      integer_param("stitch-steps", "0",
                    "steps of stitch training (0: the run's [finetune] steps, btx's budget)", 0),
  };
  m.trains = true;
  m.build = [](const MergeContext& ctx, const fs::path& out) {
    const Run& run = ctx.run;
    const int64_t every = ctx.params.integer("stitch-every");
    const int64_t layers = run.config().model.num_hidden_layers;
    BTX_CHECK(every <= layers, "--stitch-every {}: the model has {} layers", every, layers);
    std::vector<CausalLM> experts;
    for (const auto& e : ctx.experts) experts.push_back(load_model(e.dir));
    StitchedLM model(load_model(run.seed()), experts, every);
    TrainConfig t = run.config().finetune;
    if (const int64_t steps = ctx.params.integer("stitch-steps"); steps > 0) t.steps = steps;
    const std::string name = "bts/" + ctx.output_name;
    spdlog::info(
        "[{}] hub (the seed) + {} experts, stitched after layers {}: {} stitch "
        "parameters train, {} frozen; {} steps of {} tokens",
        name, ctx.experts.size(), fmt::join(model->points(), ", "), model->num_stitch_params(),
        model->num_params() - model->num_stitch_params(), t.steps, t.tokens_per_step());
    // Built in place (the study shows its metrics as it trains); a build cut short starts over:
    // the stitches are small and train in about a minute at the tiny size.
    fs::create_directories(out);
    fs::remove(out / "metrics.jsonl");
    fs::remove(out / "stitches.safetensors");
    const ShardSet data = ShardSet::open(run.data());
    const StitchTraining r = train_stitches(model, data, t, derive_seed(run.config().seed, name),
                                            out / "metrics.jsonl", name);
    save_stitches(model, out / "stitches.safetensors");
    const fs::path hub = run.seed() / "model.safetensors";
    return nlohmann::json{
        {"kind", "stitched"},
        {"hub",
         {{"path", fs::relative(run.seed(), merged_dir(run, ctx.output_name)).string()},
          {"sha256", sha256_file(hub)}}},
        {"stitch_every", every},
        {"stitch_after_layers", model->points()},
        {"stitch_params", model->num_stitch_params()},
        {"frozen_params", model->num_params() - model->num_stitch_params()},
        {"stitch_steps", r.steps},
        {"stitch_tokens", r.tokens},
        {"final_loss", r.last_loss},
        {"hub_gate", r.hub},
        {"train_seconds", r.seconds},
        {"models_run_per_token", static_cast<int64_t>(ctx.experts.size()) + 1}};
  };
  return m;
}

}  // namespace btx
