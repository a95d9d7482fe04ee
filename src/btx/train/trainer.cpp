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
  for (auto* moe : routed_layers(model)) {
    if (!moe->last_routing()) continue;
    auto u = moe->last_usage();
    layers.push_back(std::vector<double>(u.data_ptr<double>(), u.data_ptr<double>() + u.numel()));
  }
  return layers;
}
// One training job, from its checkpoint (or start point) to its last step, in the phases that
// train() below runs: skip a finished run, set up model, optimizer and data, then step, log,
// validate and checkpoint until the end or stop_after.
class Trainer {
 public:
  Trainer(const TrainJob& job, const DistributedContext& dist)
      : job_(job), t_(job.train), dist_(dist), main_(dist.is_main()) {}

  // The result of a run that out_dir already holds finished (nothing else is done), or nullopt
  // after checking that an unfinished one may be resumed.
  std::optional<TrainResult> finished_before() {
    // Rank 0 owns the files: it completes a checkpoint swap a crash cut short, the others wait.
    if (main_ && recover_dir(job_.out_dir)) {
      spdlog::warn("[{}] restored {} from a checkpoint swap cut short by a crash", job_.name,
                   job_.out_dir.string());
    }
    dist_.barrier();
    state_ = load_train_state(job_.out_dir);
    check_same_state(dist_, state_, job_);
    if (state_ && state_->done) {
      if (main_) {
        spdlog::info("[{}] already trained ({} steps) in {}: skipping", job_.name, state_->step,
                     job_.out_dir.string());
      }
      TrainResult r;
      r.skipped = true;
      r.finished = true;
      r.steps = state_->step;
      r.tokens = state_->tokens;
      return r;
    }
    BTX_CHECK(!state_ || job_.resume,
              "{} holds an unfinished checkpoint at step {}: pass --resume to continue it, or "
              "remove the folder to start over",
              job_.out_dir.string(), state_ ? state_->step : 0);
    return std::nullopt;
  }

  // The model (a resumed checkpoint, a start checkpoint, or fresh weights) on the process's
  // device, the optimizer of its trainable parameters, the data and the metrics file.
  void setup() {
    torch::manual_seed(job_.seed);
    model_ = CausalLM(job_.model);
    if (state_) {
      BTX_CHECK(load_model_config(job_.out_dir) == job_.model,
                "{}: checkpoint config differs from the run's [model] config",
                job_.out_dir.string());
      load_weights(model_, job_.out_dir);
    } else if (!job_.init_from.empty()) {
      BTX_CHECK(load_model_config(job_.init_from) == job_.model,
                "{}: its config.json differs from the run's [model] config (a checkpoint of a "
                "different architecture)",
                job_.init_from.string());
      load_weights(model_, job_.init_from);
    }
    // Weights are read and written on the CPU; the steps run on the process's device.
    device_ = default_device();
    bf16_ = default_bf16();
    BTX_CHECK(device_.is_cpu() || !dist_.enabled(),
              "[{}] data parallel training runs on the CPU only for now (--device {})", job_.name,
              device_.str());
    model_->to(device_);
    model_->train();
    dist_.broadcast(
        model_->parameters());  // identical start even if a rank initialised differently

    // The parameters this job trains (all, unless job.trainable says otherwise); the others are
    // frozen: no gradient, no optimizer state.
    std::vector<std::pair<std::string, torch::Tensor>> trained;
    for (auto& p : model_->named_parameters()) {
      if (!job_.trainable || job_.trainable(p.key())) {
        trained.emplace_back(p.key(), p.value());
      } else {
        p.value().set_requires_grad(false);
      }
    }
    BTX_CHECK(!trained.empty(), "[{}] no parameter is trainable", job_.name);
    opt_ =
        std::make_unique<AdamW>(trained, AdamWOptions{t_.beta1, t_.beta2, t_.eps, t_.weight_decay});
    for (const auto& [name, mask] : job_.update_masks) {
      auto it = std::find_if(trained.begin(), trained.end(),
                             [&](const auto& p) { return p.first == name; });
      BTX_CHECK(it != trained.end(), "[{}] update mask for '{}', which is not a trained parameter",
                job_.name, name);
      const auto m = mask.to(it->second.device(), it->second.scalar_type());
      // The masked gradient is zero before clipping and AdamW, so its moments stay zero too.
      it->second.register_hook([m](const torch::Tensor& g) { return g * m; });
      opt_->set_update_mask(name, m);
    }
    if (state_) {
      load_optimizer(*opt_, job_.out_dir, state_->step);
      step_ = state_->step;
      tokens_ = state_->tokens;
      if (main_) {
        spdlog::info("[{}] resuming from step {} in {}", job_.name, step_, job_.out_dir.string());
      }
    }
    for (const auto& [name, p] : trained) params_.push_back(p);

    data_ = std::make_unique<ShardSet>(ShardSet::open(job_.data_dir));
    sampler_ = std::make_unique<MixtureSampler>(*data_, "train", t_.domain_weights, t_.seq_len,
                                                job_.seed, job_.partition);
    metrics_file_ = job_.out_dir / "metrics.jsonl";
    if (main_) {
      fs::create_directories(job_.out_dir);
      truncate_metrics(metrics_file_, step_);
    }
    if (main_) {
      spdlog::info("[{}] {} params, {} steps x {} tokens, {} domains{}{}", job_.name,
                   model_->num_params(), t_.steps, t_.tokens_per_step(), data_->domains().size(),
                   device_.is_cpu() ? "" : ", on " + device_.str(), bf16_ ? ", bf16 autocast" : "");
    }
    if (main_ && dist_.enabled()) {
      spdlog::info("[{}] data parallel: {} ranks x {} of the {} rows of each micro-batch",
                   job_.name, dist_.world_size, t_.batch_size / dist_.world_size, t_.batch_size);
    }
  }

  // Trains from the current step to the end, or to stop_after with a resumable checkpoint.
  TrainResult run() {
    BatchPrefetcher batches = prefetcher();
    interval_start_ = Clock::now();
    run_start_ = Clock::now();
    first_step_ = step_;
    while (step_ < t_.steps) {
      const Step s = train_step(batches);
      if (main_ && (step_ % t_.log_every == 0 || step_ == t_.steps)) log(s);
      if (main_ && (step_ % t_.eval_every == 0 || step_ == t_.steps)) validate_now();
      if (job_.stop_after > 0 && step_ >= job_.stop_after && step_ < t_.steps) {
        checkpoint(false);
        dist_.barrier();  // returns once the checkpoint is in place, on every rank
        if (main_) {
          spdlog::info("[{}] stopped after step {} as asked; --resume continues", job_.name, step_);
        }
        return result(/*finished=*/false);
      }
      if (step_ % t_.checkpoint_every == 0 && step_ < t_.steps) checkpoint(false);
    }
    checkpoint(true);
    dist_.barrier();
    return result(/*finished=*/true);
  }

 private:
  // What one optimizer step measured.
  struct Step {
    double loss = 0;     // mean over the micro-batches and ranks
    double aux_sum = 0;  // this rank's load-balancing losses, summed over micro-batches
    bool has_aux = false;
    double lr = 0, grad_norm = 0;
  };

  // The micro-batches of this rank, made ahead on another thread (pinned for a GPU); index =
  // step x grad_accum + micro, as the sampler numbers them.
  BatchPrefetcher prefetcher() const {
    const int64_t rows = t_.batch_size / dist_.world_size;  // this rank's share of a micro-batch
    const int64_t first_row = dist_.rank * rows;
    const bool with_domains = static_cast<bool>(job_.before_forward);
    const MixtureSampler* sampler = sampler_.get();
    const bool cuda = device_.is_cuda();
    return BatchPrefetcher(
        [sampler, first_row, rows, with_domains, cuda](int64_t index) {
          PrefetchedBatch b;
          b.tokens = sampler->rows(index, first_row, first_row + rows,
                                   with_domains ? &b.domains : nullptr);  // (B/W, T+1)
          if (cuda) b.tokens = b.tokens.pin_memory();
          return b;
        },
        step_ * t_.grad_accum, t_.steps * t_.grad_accum, kPrefetchDepth);
  }

  // One optimizer step: grad_accum micro-batches forward and backward, gradients averaged over
  // ranks and clipped, one AdamW update.
  Step train_step(BatchPrefetcher& batches) {
    Step s;
    opt_->zero_grad();
    // Training-time randomness (expert dropout, sampled routing) is a function of the step, so
    // a resumed run draws exactly what an uninterrupted one would.
    torch::manual_seed(derive_seed(job_.seed, "step/rank" + std::to_string(dist_.rank),
                                   static_cast<uint64_t>(step_)));
    double loss_sum = 0;
    for (int64_t micro = 0; micro < t_.grad_accum; ++micro) {
      PrefetchedBatch next = batches.next();
      const std::vector<int>& row_domain = next.domains;
      auto batch = next.tokens;  // (B/W, T+1)
      if (device_.is_cuda()) batch = batch.to(device_, /*non_blocking=*/true);
      if (job_.before_forward) {
        std::vector<std::string> names;
        for (int d : row_domain) names.push_back(sampler_->domains()[static_cast<size_t>(d)]);
        job_.before_forward(model_, names);
      }
      // The mean over this rank's rows; averaged over ranks below, the mean over the batch.
      torch::Tensor loss, objective;
      {
        AutocastGuard autocast(device_, bf16_);  // the forward only; backward follows its casts
        auto nll = token_nll(model_, batch);     // (B/W, T), fp32
        loss = nll.mean();
        objective = loss;
        if (auto aux = model_->aux_loss(); aux.defined()) {  // MoE load balancing
          objective = objective + aux;
          s.aux_sum += aux.item<double>();
          s.has_aux = true;
        }
        if (auto policy = model_->policy_loss(nll.detach()); policy.defined()) {  // REINFORCE
          objective = objective + policy;
        }
      }
      (objective / static_cast<double>(t_.grad_accum)).backward();
      loss_sum += loss.item<double>();
    }
    allreduce_gradients(dist_, params_);
    if (t_.grad_clip > 0) {
      s.grad_norm = torch::nn::utils::clip_grad_norm_(params_, t_.grad_clip);
    }
    s.lr = lr_at(step_, t_.steps, t_.warmup_steps, t_.lr, t_.min_lr);
    opt_->step(s.lr);
    ++step_;
    tokens_ += t_.tokens_per_step();
    interval_tokens_ += t_.tokens_per_step();
    s.loss = dist_.mean(loss_sum / static_cast<double>(t_.grad_accum));
    BTX_CHECK(std::isfinite(s.loss),
              "[{}] loss became {} at step {}: lower lr (now {}) or check "
              "the data",
              job_.name, s.loss, step_, t_.lr);
    return s;
  }

  // A training record in metrics.jsonl and a log line.
  void log(const Step& s) {
    const double dt = std::chrono::duration<double>(Clock::now() - interval_start_).count();
    const double tps = interval_tokens_ / std::max(dt, 1e-9);
    const double elapsed = std::chrono::duration<double>(Clock::now() - run_start_).count();
    const double eta =
        elapsed / static_cast<double>(step_ - first_step_) * static_cast<double>(t_.steps - step_);
    // "steps" is the total, so that a progress view can show an ETA for jobs whose length is
    // decided when they start (the compute-matched dense baseline).
    nlohmann::json record = {{"step", step_},      {"steps", t_.steps},        {"loss", s.loss},
                             {"lr", s.lr},         {"grad_norm", s.grad_norm}, {"tokens", tokens_},
                             {"tokens_per_s", tps}};
    if (s.has_aux) {
      record["aux_loss"] = dist_.mean(s.aux_sum / static_cast<double>(t_.grad_accum));
      record["expert_usage"] = expert_usage(model_);
    }
    MetricsLog(metrics_file_).write(record);
    spdlog::info("[{}] step {}/{} | loss {:.4f} | lr {:.2e} | {:.1f}k tok/s | ETA {}", job_.name,
                 step_, t_.steps, s.loss, s.lr, tps / 1000.0, format_duration(eta));
    interval_start_ = Clock::now();
    interval_tokens_ = 0;
  }

  // Per-domain validation loss: a record in metrics.jsonl, a log line, and the result's.
  void validate_now() {
    valid_loss_ = validate(model_, *data_, job_.domains, job_);
    nlohmann::json v = nlohmann::json::object();
    std::string line;
    for (auto& [d, l] : valid_loss_) {
      v[d] = l;
      line += fmt::format(" {} {:.2f}", d, std::exp(l));
    }
    MetricsLog(metrics_file_).write({{"step", step_}, {"tokens", tokens_}, {"valid_loss", v}});
    spdlog::info("[{}] step {} valid ppl:{}", job_.name, step_, line);
  }

  // Rank 0 saves the model, the optimizer and the state (with the carried files) into out_dir.
  void checkpoint(bool done) {
    if (!main_) return;
    TrainState s;
    s.step = step_;
    s.tokens = tokens_;
    s.data_seed = job_.seed;
    s.done = done;
    std::vector<fs::path> carried = {metrics_file_};
    for (const auto& f : job_.keep_files) carried.push_back(job_.out_dir / f);
    save_checkpoint(job_.out_dir, {&model_, opt_.get(), &s, carried});
  }

  TrainResult result(bool finished) {
    TrainResult r;
    r.steps = step_;
    r.tokens = tokens_;
    r.finished = finished;
    r.valid_loss = valid_loss_;
    model_->to(torch::kCPU);  // what callers do with it next (evaluate, analyse) runs on the CPU
    r.model = model_;
    return r;
  }

  const TrainJob& job_;
  const TrainConfig& t_;
  const DistributedContext& dist_;
  const bool main_;  // logs and writes files
  std::optional<TrainState> state_;
  CausalLM model_{nullptr};
  torch::Device device_ = torch::kCPU;
  bool bf16_ = false;
  std::unique_ptr<AdamW> opt_;
  std::vector<torch::Tensor> params_;  // the trained ones
  std::unique_ptr<ShardSet> data_;
  std::unique_ptr<MixtureSampler> sampler_;
  fs::path metrics_file_;
  int64_t step_ = 0, tokens_ = 0;
  std::map<std::string, double> valid_loss_;  // the last validation (rank 0)
  Clock::time_point interval_start_, run_start_;
  int64_t first_step_ = 0, interval_tokens_ = 0;
};

}  // namespace

TrainResult train(const TrainJob& job) {
  job.train.validate(job.name);
  if (job.train.threads > 0) torch::set_num_threads(job.train.threads);
  const DistributedContext* found = job.dist != nullptr ? job.dist : current_distributed();
  const DistributedContext single;
  const DistributedContext& dist = found != nullptr ? *found : single;
  BTX_CHECK(job.train.batch_size % dist.world_size == 0,
            "[{}] batch_size {} is not divisible by WORLD_SIZE {}: every rank takes an equal "
            "share of each micro-batch",
            job.name, job.train.batch_size, dist.world_size);
  Trainer trainer(job, dist);
  if (auto done = trainer.finished_before()) return *done;
  trainer.setup();
  return trainer.run();
}

}  // namespace btx
