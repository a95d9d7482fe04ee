#include "btx/train/trainer.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>

#include "btx/data/prefetch.h"
#include "btx/data/sampler.h"
#include "btx/data/shards.h"
#include "btx/eval/evaluate.h"
#include "btx/model/moe.h"
#include "btx/train/adamw.h"
#include "btx/train/checkpoint.h"
#include "btx/train/distributed.h"
#include "btx/util/device.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

using Clock = std::chrono::steady_clock;

// Micro-batches made ahead of the step that uses them.
constexpr size_t kPrefetchDepth = 2;

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

// Keeps only metric records up to `step` (those after it belong to an interrupted run).
void truncate_metrics(const fs::path& file, int64_t step) {
  if (!fs::exists(file)) return;
  std::istringstream in(read_file(file));
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      if (nlohmann::json::parse(line).value("step", int64_t{0}) > step) continue;
    } catch (const nlohmann::json::parse_error&) {
      continue;  // a line cut by a crash
    }
    kept += line + "\n";
  }
  write_file_atomic(file, kept);
}

// Appends one JSON record per line. Opens the file for each record: a checkpoint swaps the
// stage folder, so a handle kept open would point into the folder that was replaced.
class MetricsLog {
 public:
  explicit MetricsLog(fs::path file) : file_(std::move(file)) {}
  void write(const nlohmann::json& j) const {
    std::ofstream out(file_, std::ios::app);
    BTX_CHECK(out, "cannot append to {}", file_.string());
    out << j.dump() << "\n";
  }

 private:
  fs::path file_;
};

std::map<std::string, double> validate(CausalLM& model, const ShardSet& data,
                                       const std::vector<std::string>& domains,
                                       const TrainJob& job) {
  const TrainConfig& t = job.train;
  ModelScorer scorer(model);
  std::map<std::string, double> out;
  for (const auto& d : domains.empty() ? data.domains() : domains) {
    if (job.before_forward) job.before_forward(model, {d});  // all rows of domain d
    const auto& shard = data.shard(d, "valid");
    out[d] =
        score_stream(scorer, shard.slice(0, shard.size()), t.seq_len, t.batch_size, t.eval_tokens)
            .loss;
  }
  model->train();
  return out;
}

// Ranks that resume must all see the same checkpoint (one shared out_dir); otherwise they would
// train different models. Every rank learns of a mismatch, so all stop with the same error.
void check_same_state(const DistributedContext& dist, const std::optional<TrainState>& state,
                      const TrainJob& job) {
  if (!dist.enabled()) return;
  const int64_t mine = state ? state->step * 2 + (state->done ? 1 : 0) : -1;
  auto rank0 = torch::full({1}, mine, torch::kLong);
  dist.broadcast({rank0});
  const int64_t theirs = rank0.item<int64_t>();
  const auto describe = [](int64_t v) {
    return v < 0 ? std::string("no checkpoint")
                 : fmt::format("a checkpoint at step {}{}", v / 2, v % 2 ? " (done)" : "");
  };
  if (dist.sum(mine != theirs ? 1 : 0) == 0) return;
  const std::string other = mine != theirs
                                ? fmt::format("rank {} sees {}", dist.rank, describe(mine))
                                : std::string("another rank does not");
  fail(
      "[{}] ranks see different checkpoints in {}: rank 0 sees {}, {} (do all ranks share "
      "one filesystem?)",
      job.name, job.out_dir.string(), describe(theirs), other);
}

// Per MoE layer, the fraction of the last micro-batch's tokens routed to each expert.
nlohmann::json expert_usage(const CausalLM& model) {
  nlohmann::json layers = nlohmann::json::array();
  for (auto* moe : moe_layers(model)) {
    if (!moe->last_routing()) continue;
    auto u = moe->last_usage();
    layers.push_back(std::vector<double>(u.data_ptr<double>(), u.data_ptr<double>() + u.numel()));
  }
  return layers;
}
}  // namespace

TrainResult train(const TrainJob& job) {
  const TrainConfig& t = job.train;
  t.validate(job.name);
  if (t.threads > 0) torch::set_num_threads(t.threads);
  TrainResult result;
  const DistributedContext* found = job.dist != nullptr ? job.dist : current_distributed();
  const DistributedContext single;
  const DistributedContext& dist = found != nullptr ? *found : single;
  const bool main = dist.is_main();  // logs and writes files
  BTX_CHECK(t.batch_size % dist.world_size == 0,
            "[{}] batch_size {} is not divisible by WORLD_SIZE {}: every rank takes an equal "
            "share of each micro-batch",
            job.name, t.batch_size, dist.world_size);

  // Rank 0 owns the files: it completes a checkpoint swap a crash cut short, the others wait.
  if (main && recover_dir(job.out_dir)) {
    spdlog::warn("[{}] restored {} from a checkpoint swap cut short by a crash", job.name,
                 job.out_dir.string());
  }
  dist.barrier();
  auto state = load_train_state(job.out_dir);
  check_same_state(dist, state, job);
  if (state && state->done) {
    if (main) {
      spdlog::info("[{}] already trained ({} steps) in {}: skipping", job.name, state->step,
                   job.out_dir.string());
    }
    result.skipped = true;
    result.finished = true;
    result.steps = state->step;
    result.tokens = state->tokens;
    return result;
  }
  BTX_CHECK(!state || job.resume,
            "{} holds an unfinished checkpoint at step {}: pass --resume to continue it, or "
            "remove the folder to start over",
            job.out_dir.string(), state ? state->step : 0);

  // Model: a resumed checkpoint, a start checkpoint, or fresh weights.
  torch::manual_seed(job.seed);
  CausalLM model(job.model);
  if (state) {
    BTX_CHECK(load_model_config(job.out_dir) == job.model,
              "{}: checkpoint config differs from the run's [model] config", job.out_dir.string());
    load_weights(model, job.out_dir);
  } else if (!job.init_from.empty()) {
    BTX_CHECK(load_model_config(job.init_from) == job.model,
              "{}: its config.json differs from the run's [model] config (a checkpoint of a "
              "different architecture)",
              job.init_from.string());
    load_weights(model, job.init_from);
  }
  // Weights are read and written on the CPU; the steps run on the process's device.
  const torch::Device device = default_device();
  const bool bf16 = default_bf16();
  BTX_CHECK(device.is_cpu() || !dist.enabled(),
            "[{}] data parallel training runs on the CPU only for now (--device {})", job.name,
            device.str());
  model->to(device);
  model->train();
  dist.broadcast(model->parameters());  // identical start even if a rank initialised differently

  // The parameters this job trains (all, unless job.trainable says otherwise); the others are
  // frozen: no gradient, no optimizer state.
  std::vector<std::pair<std::string, torch::Tensor>> trained;
  for (auto& p : model->named_parameters()) {
    if (!job.trainable || job.trainable(p.key())) {
      trained.emplace_back(p.key(), p.value());
    } else {
      p.value().set_requires_grad(false);
    }
  }
  BTX_CHECK(!trained.empty(), "[{}] no parameter is trainable", job.name);
  AdamW opt(trained, AdamWOptions{t.beta1, t.beta2, t.eps, t.weight_decay});
  int64_t step = 0, tokens = 0;
  if (state) {
    load_optimizer(opt, job.out_dir, state->step);
    step = state->step;
    tokens = state->tokens;
    if (main) {
      spdlog::info("[{}] resuming from step {} in {}", job.name, step, job.out_dir.string());
    }
  }

  const ShardSet data = ShardSet::open(job.data_dir);
  const MixtureSampler sampler(data, "train", t.domain_weights, t.seq_len, job.seed, job.partition);
  const fs::path metrics_file = job.out_dir / "metrics.jsonl";
  if (main) {
    fs::create_directories(job.out_dir);
    truncate_metrics(metrics_file, step);
  }
  MetricsLog metrics(metrics_file);

  auto checkpoint = [&](bool done) {
    if (!main) return;
    TrainState s;
    s.step = step;
    s.tokens = tokens;
    s.data_seed = job.seed;
    s.done = done;
    std::vector<fs::path> carried = {metrics_file};
    for (const auto& f : job.keep_files) carried.push_back(job.out_dir / f);
    save_checkpoint(job.out_dir, {&model, &opt, &s, carried});
  };

  const int64_t tokens_per_step = t.batch_size * t.grad_accum * t.seq_len;  // all ranks
  if (main) {
    spdlog::info("[{}] {} params, {} steps x {} tokens, {} domains{}{}", job.name,
                 model->num_params(), t.steps, tokens_per_step, data.domains().size(),
                 device.is_cpu() ? "" : ", on " + device.str(), bf16 ? ", bf16 autocast" : "");
  }
  if (main && dist.enabled()) {
    spdlog::info("[{}] data parallel: {} ranks x {} of the {} rows of each micro-batch", job.name,
                 dist.world_size, t.batch_size / dist.world_size, t.batch_size);
  }
  std::vector<torch::Tensor> params;
  for (const auto& [name, p] : trained) params.push_back(p);
  const int64_t rows = t.batch_size / dist.world_size;  // this rank's share of a micro-batch
  const int64_t first_row = dist.rank * rows;
  // The micro-batches, made ahead on another thread (pinned for a GPU); index = step x
  // grad_accum + micro, as the sampler numbers them.
  const bool with_domains = static_cast<bool>(job.before_forward);
  BatchPrefetcher batches(
      [&](int64_t index) {
        PrefetchedBatch b;
        b.tokens = sampler.rows(index, first_row, first_row + rows,
                                with_domains ? &b.domains : nullptr);  // (B/W, T+1)
        if (device.is_cuda()) b.tokens = b.tokens.pin_memory();
        return b;
      },
      step * t.grad_accum, t.steps * t.grad_accum, kPrefetchDepth);
  auto interval_start = Clock::now();
  const auto run_start = Clock::now();
  const int64_t first_step = step;
  int64_t interval_tokens = 0;
  while (step < t.steps) {
    opt.zero_grad();
    // Training-time randomness (expert dropout, sampled routing) is a function of the step, so
    // a resumed run draws exactly what an uninterrupted one would.
    torch::manual_seed(derive_seed(job.seed, "step/rank" + std::to_string(dist.rank),
                                   static_cast<uint64_t>(step)));
    double loss_sum = 0, aux_sum = 0;
    bool has_aux = false;
    for (int64_t micro = 0; micro < t.grad_accum; ++micro) {
      PrefetchedBatch next = batches.next();
      const std::vector<int>& row_domain = next.domains;
      auto batch = next.tokens;  // (B/W, T+1)
      if (device.is_cuda()) batch = batch.to(device, /*non_blocking=*/true);
      if (job.before_forward) {
        std::vector<std::string> names;
        for (int d : row_domain) names.push_back(sampler.domains()[static_cast<size_t>(d)]);
        job.before_forward(model, names);
      }
      // The mean over this rank's rows; averaged over ranks below, the mean over the batch.
      torch::Tensor loss, objective;
      {
        AutocastGuard autocast(device, bf16);  // the forward only; backward follows its casts
        auto nll = token_nll(model, batch);    // (B/W, T), fp32
        loss = nll.mean();
        objective = loss;
        if (auto aux = model->aux_loss(); aux.defined()) {  // MoE load balancing
          objective = objective + aux;
          aux_sum += aux.item<double>();
          has_aux = true;
        }
        if (auto policy = model->policy_loss(nll.detach()); policy.defined()) {  // REINFORCE
          objective = objective + policy;
        }
      }
      (objective / static_cast<double>(t.grad_accum)).backward();
      loss_sum += loss.item<double>();
    }
    allreduce_gradients(dist, params);
    double grad_norm = 0;
    if (t.grad_clip > 0) {
      grad_norm = torch::nn::utils::clip_grad_norm_(params, t.grad_clip);
    }
    const double lr = lr_at(step, t.steps, t.warmup_steps, t.lr, t.min_lr);
    opt.step(lr);
    ++step;
    tokens += tokens_per_step;
    interval_tokens += tokens_per_step;
    const double loss = dist.mean(loss_sum / static_cast<double>(t.grad_accum));
    BTX_CHECK(std::isfinite(loss),
              "[{}] loss became {} at step {}: lower lr (now {}) or check "
              "the data",
              job.name, loss, step, t.lr);

    if (main && (step % t.log_every == 0 || step == t.steps)) {
      const double dt = std::chrono::duration<double>(Clock::now() - interval_start).count();
      const double tps = interval_tokens / std::max(dt, 1e-9);
      const double elapsed = std::chrono::duration<double>(Clock::now() - run_start).count();
      const double eta =
          elapsed / static_cast<double>(step - first_step) * static_cast<double>(t.steps - step);
      // "steps" is the total, so that a progress view can show an ETA for jobs whose length is
      // decided when they start (the compute-matched dense baseline).
      nlohmann::json record = {{"step", step},       {"steps", t.steps},       {"loss", loss},
                               {"lr", lr},           {"grad_norm", grad_norm}, {"tokens", tokens},
                               {"tokens_per_s", tps}};
      if (has_aux) {
        record["aux_loss"] = dist.mean(aux_sum / static_cast<double>(t.grad_accum));
        record["expert_usage"] = expert_usage(model);
      }
      metrics.write(record);
      spdlog::info("[{}] step {}/{} | loss {:.4f} | lr {:.2e} | {:.1f}k tok/s | ETA {}", job.name,
                   step, t.steps, loss, lr, tps / 1000.0, format_duration(eta));
      interval_start = Clock::now();
      interval_tokens = 0;
    }
    if (main && (step % t.eval_every == 0 || step == t.steps)) {
      result.valid_loss = validate(model, data, job.domains, job);
      nlohmann::json v = nlohmann::json::object();
      std::string line;
      for (auto& [d, l] : result.valid_loss) {
        v[d] = l;
        line += fmt::format(" {} {:.2f}", d, std::exp(l));
      }
      metrics.write({{"step", step}, {"tokens", tokens}, {"valid_loss", v}});
      spdlog::info("[{}] step {} valid ppl:{}", job.name, step, line);
    }
    if (job.stop_after > 0 && step >= job.stop_after && step < t.steps) {
      checkpoint(false);
      dist.barrier();  // returns once the checkpoint is in place, on every rank
      if (main) {
        spdlog::info("[{}] stopped after step {} as asked; --resume continues", job.name, step);
      }
      result.steps = step;
      result.tokens = tokens;
      model->to(torch::kCPU);  // as at the end
      result.model = model;
      return result;
    }
    if (step % t.checkpoint_every == 0 && step < t.steps) checkpoint(false);
  }
  checkpoint(true);
  dist.barrier();
  model->to(torch::kCPU);  // what callers do with it next (evaluate, analyse) runs on the CPU
  result.model = model;
  result.finished = true;
  result.steps = step;
  result.tokens = tokens;
  return result;
}

}  // namespace btx
