#include "btx/run/experts.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "btx/data/shards.h"
#include "btx/eval/ensemble.h"
#include "btx/io/safetensors.h"
#include "btx/model/param_roles.h"
#include "btx/run/flexolmo.h"
#include "btx/train/checkpoint.h"
#include "btx/train/distributed.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

nlohmann::json ExpertSpec::to_json() const {
  nlohmann::json j = {{"name", name}, {"domains", domains}};
  if (mode != ExpertMode::kAll) j["mode"] = name_of(mode);
  if (partition.count > 1) {
    j["partition"] = {{"index", partition.index},
                      {"count", partition.count},
                      {"seed", partition.seed},
                      {"block_tokens", partition.block_tokens}};
  }
  return j;
}

std::vector<std::string> ExpertSpec::trained_domains() const {
  std::vector<std::string> out;
  for (const auto& [d, w] : domains) {
    if (w > 0) out.push_back(d);
  }
  return out;
}

ExpertSpec ExpertSpec::from_json(const nlohmann::json& j, const std::string& where) {
  try {
    ExpertSpec s;
    s.name = j.at("name").get<std::string>();
    s.domains = j.at("domains").get<std::map<std::string, double>>();
    s.mode = parse_named<ExpertMode>(j.value("mode", std::string("all")), "mode");
    if (j.contains("partition")) {
      const auto& p = j["partition"];
      s.partition = {p.at("index").get<int>(), p.at("count").get<int>(),
                     p.at("seed").get<uint64_t>(), p.at("block_tokens").get<int64_t>()};
    }
    return s;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed expert spec ({})", where, e.what());
  }
}

void check_domains(const std::map<std::string, double>& mix, const std::vector<std::string>& have,
                   const std::string& expert) {
  for (const auto& [d, w] : mix) {
    BTX_CHECK(std::find(have.begin(), have.end(), d) != have.end(),
              "expert '{}': domain '{}' has no data in this run (it has: {})", expert, d,
              fmt::join(have, ", "));
    BTX_CHECK(w >= 0, "expert '{}': weight of domain '{}' must be >= 0", expert, d);
  }
}

TrainState require_finished_seed(const RunDir& run) {
  auto s = load_train_state(run.seed());
  BTX_CHECK(s && s->done, "{} has no finished seed model (run `btx seed --run {}` first)",
            run.root.string(), run.root.string());
  return *s;
}

namespace {
fs::path failed_marker(const RunDir& run, const std::string& name) {
  return experts_dir(run) / (name + ".failed");
}
}  // namespace

std::vector<ExpertSpec> resolve_experts(const RunConfig& c,
                                        const std::vector<std::string>& domains) {
  std::vector<ExpertSpec> out;
  if (!c.experts.custom.empty()) {
    for (const auto& e : c.experts.custom) {
      check_domains(e.domains, domains, e.name);
      out.push_back({e.name, e.domains, {}, c.experts.mode});
    }
  } else if (c.experts.split == "domain") {
    for (const auto& d : domains) out.push_back({d, {{d, 1.0}}, {}, c.experts.mode});
  } else {  // random: equal shares of the whole mixture
    const int n = c.experts.count > 0 ? c.experts.count : static_cast<int>(domains.size());
    std::map<std::string, double> all;
    for (const auto& d : domains) all[d] = 1.0;
    for (int i = 0; i < n; ++i) {
      out.push_back(
          {fmt::format("random_{}", i), all, DataPartition{i, n, c.seed, 8192}, c.experts.mode});
    }
  }
  return out;
}

fs::path experts_dir(const RunDir& run) {
  return run.root / "experts";
}
fs::path expert_dir(const RunDir& run, const std::string& name) {
  return experts_dir(run) / name;
}
fs::path expert_lock_file(const RunDir& run, const std::string& name) {
  return experts_dir(run) / (name + ".lock");
}

std::vector<ExpertSpec> list_experts(const RunDir& run) {
  std::vector<ExpertSpec> out;
  if (!fs::is_directory(experts_dir(run))) return out;
  for (const auto& e : fs::directory_iterator(experts_dir(run))) {
    const fs::path spec = e.path() / "expert.json";
    const std::string folder = e.path().filename().string();
    if (e.is_directory() && !is_temp_name(folder) && fs::exists(spec)) {
      out.push_back(ExpertSpec::from_json(read_json_file(spec), spec.string()));
      BTX_CHECK(out.back().name == folder,
                "{} names expert '{}', but its folder is '{}' (a copied or renamed folder?)",
                spec.string(), out.back().name, folder);
    }
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.name < b.name; });
  return out;
}

std::vector<std::string> tidy_run(const RunDir& run) {
  std::vector<std::string> done;
  // One folder under its lock rule: left alone while a live process (or one on another host,
  // which cannot be checked) holds `lock`.
  auto tidy = [&](const fs::path& dir, const fs::path& lock) {
    if (const auto h = ExpertLock::holder(lock); h && ExpertLock::alive(*h)) return;
    const bool missing = !fs::exists(dir);
    for (const auto& p : tidy_dir(dir)) {
      done.push_back(fmt::format("removed {}, left by a process that is gone", p.string()));
    }
    if (missing && fs::exists(dir)) {
      done.push_back(fmt::format("restored {} from a swap a crash cut short", dir.string()));
    }
  };
  tidy(run.seed(), run.root / "seed.lock");
  if (fs::is_directory(experts_dir(run))) {
    std::set<std::string> bases;
    for (const auto& e : fs::directory_iterator(experts_dir(run))) {
      std::string name = e.path().filename().string();
      const size_t at = name.find(".tmp-");
      if (at == std::string::npos) continue;
      name.resize(at);
      if (name.size() > 4 && name.compare(name.size() - 4, 4, ".old") == 0)
        name.resize(name.size() - 4);
      if (!name.empty()) bases.insert(name);
    }
    for (const auto& name : bases) tidy(expert_dir(run, name), expert_lock_file(run, name));
  }
  for (const auto& line : done) spdlog::warn("{}", line);
  return done;
}

ExpertSpec find_expert(const RunDir& run, const std::string& name) {
  const auto all = list_experts(run);
  for (const auto& e : all) {
    if (e.name == name) return e;
  }
  std::vector<std::string> names;
  for (const auto& e : all) names.push_back(e.name);
  fail("no expert '{}' in {} ({}; `btx branch --run {}` creates them)", name,
       experts_dir(run).string(),
       names.empty() ? std::string("none branched yet")
                     : fmt::format("it has: {}", fmt::join(names, ", ")),
       run.root.string());
}

namespace {
// kFlexolmoInitWindows held-out windows shared among `domains`.
torch::Tensor heldout_windows(const Run& run, const std::vector<std::string>& domains) {
  const RunConfig& c = run.config();
  BTX_CHECK(!domains.empty(), "no training domains to take held-out windows from");
  const int64_t per =
      std::max<int64_t>(1, kFlexolmoInitWindows / static_cast<int64_t>(domains.size()));
  std::vector<torch::Tensor> parts;
  for (const auto& d : domains) {
    parts.push_back(domain_heldout_windows(run, d, per, c.experts.train.seq_len));
  }
  return torch::cat(parts);
}
}  // namespace

std::vector<std::string> branch_experts(const Run& run) {
  const RunConfig& c = run.config();
  const TrainState seed_state = require_finished_seed(run);
  const ShardSet& data = run.shards();
  const std::string seed_sha = sha256_file(run.seed() / "model.safetensors");
  std::vector<std::string> branched;
  const std::vector<ExpertSpec> specs = resolve_experts(c, data.domains());
  // FlexOlmo's anchor stands for the whole training mixture: every expert's domains.
  std::vector<std::string> anchor_domains;
  for (const auto& spec : specs) {
    for (const auto& d : spec.trained_domains()) {
      if (std::find(anchor_domains.begin(), anchor_domains.end(), d) == anchor_domains.end()) {
        anchor_domains.push_back(d);
      }
    }
  }
  std::sort(anchor_domains.begin(), anchor_domains.end());
  for (const auto& spec : specs) {
    const fs::path dir = expert_dir(run, spec.name);
    if (fs::exists(dir / "expert.json")) {
      const auto have = ExpertSpec::from_json(read_json_file(dir / "expert.json"), dir.string());
      BTX_CHECK(have.to_json() == spec.to_json(),
                "{} exists with a different spec ({} vs the config's {}); use a new run",
                dir.string(), have.to_json().dump(), spec.to_json().dump());
      continue;
    }
    write_dir_atomic(dir, [&](const fs::path& tmp) {
      if (spec.mode == ExpertMode::kFlexolmo) {
        write_flexolmo_expert(run.seed(), heldout_windows(run, spec.trained_domains()),
                              heldout_windows(run, anchor_domains), c.experts.train.seq_len, tmp);
      } else {
        fs::copy_file(run.seed() / "model.safetensors", tmp / "model.safetensors");
        fs::copy_file(run.seed() / "config.json", tmp / "config.json");
      }
      auto j = spec.to_json();
      j["init"] = {{"from", "seed"}, {"seed_step", seed_state.step}, {"seed_sha256", seed_sha}};
      write_file_atomic(tmp / "expert.json", j.dump(2));
    });
    spdlog::info("branched expert '{}' from the seed ({})", spec.name, dir.string());
    branched.push_back(spec.name);
  }
  return branched;
}

std::map<std::string, double> expert_posterior(const Run& run,
                                               const std::vector<std::string>& expert_names,
                                               const std::vector<std::string>& domains,
                                               int64_t windows, double alpha) {
  const RunConfig& c = run.config();
  std::vector<torch::Tensor> parts;
  const int64_t per_domain = std::max<int64_t>(1, windows / static_cast<int64_t>(domains.size()));
  for (const auto& d : domains) {
    auto w = domain_heldout_windows(run, d, per_domain, c.experts.train.seq_len);
    BTX_CHECK(w.size(0) >= 1,
              "domain '{}' has too little held-out text for one window of {} tokens", d,
              c.experts.train.seq_len + 1);
    parts.push_back(w);
  }
  std::vector<CausalLM> experts;
  for (const auto& name : expert_names) experts.push_back(load_model(expert_dir(run, name)));
  auto post = estimate_cached_prior(experts, torch::cat(parts), alpha);
  std::map<std::string, double> out;
  for (size_t j = 0; j < expert_names.size(); ++j) {
    out[expert_names[j]] = post[static_cast<int64_t>(j)].item<double>();
  }
  return out;
}

// ---- lock ---------------------------------------------------------------------------------

namespace {
std::string host_name() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}
}  // namespace

std::optional<nlohmann::json> ExpertLock::holder(const fs::path& file) {
  if (!fs::exists(file)) return std::nullopt;
  try {
    return nlohmann::json::parse(read_file(file));
  } catch (const std::exception&) {
    return nlohmann::json{{"pid", 0}, {"host", "?"}, {"started", "?"}};  // half-written: stale
  }
}

bool ExpertLock::alive(const nlohmann::json& h) {
  if (h.value("host", "") != host_name()) return true;  // cannot tell: assume it is
  const int pid = h.value("pid", 0);
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

ExpertLock::ExpertLock(fs::path file) : file_(std::move(file)) {
  fs::create_directories(file_.parent_path());
  const nlohmann::json me = {{"pid", ::getpid()},
                             {"host", host_name()},
                             {"started", std::chrono::duration_cast<std::chrono::seconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count()}};
  for (int attempt = 0; attempt < 2; ++attempt) {
    // Write the holder to a temporary file, then link it into place: link() fails if the lock
    // exists, so exactly one process wins, and the lock is never seen half-written.
    const fs::path tmp = temp_sibling(file_);
    write_file_atomic(tmp, me.dump());
    const int rc = ::link(tmp.c_str(), file_.c_str());
    const int err = errno;
    fs::remove(tmp);
    if (rc == 0) return;
    BTX_CHECK(err == EEXIST, "cannot create lock {}: {}", file_.string(), std::strerror(err));
    const auto h = holder(file_);
    if (!h) continue;  // released meanwhile
    if (alive(*h)) {
      fail(
          "{} is held by pid {} on host {}: that expert is being trained already (if that "
          "process is gone on another machine, remove the lock file)",
          file_.string(), h->value("pid", 0), h->value("host", "?"));
    }
    spdlog::warn("stale lock {} from pid {} on {} (process gone): taking it over", file_.string(),
                 h->value("pid", 0), h->value("host", "?"));
    fs::remove(file_);
  }
  fail("could not take lock {}", file_.string());
}

ExpertLock::~ExpertLock() {
  std::error_code ec;
  fs::remove(file_, ec);
}

TrainResult train_expert(const Run& run, const std::string& name, bool resume, int64_t stop_after,
                         int threads) {
  const RunConfig& c = run.config();
  const ExpertSpec spec = find_expert(run, name);
  // Data parallel: rank 0 owns the expert's files (lock, failure marker); the others follow.
  const DistributedContext* dist = current_distributed();
  const bool main_rank = dist == nullptr || dist->is_main();
  std::optional<ExpertLock> lock;
  if (main_rank) lock.emplace(expert_lock_file(run, name));
  const fs::path marker = failed_marker(run, name);
  std::error_code ec;
  if (main_rank) fs::remove(marker, ec);
  TrainJob job = run_train_job(run, name, expert_dir(run, name), c.experts.train, "expert/" + name);
  job.init_from = job.out_dir;  // the branch point, until the first checkpoint replaces it
  job.train.domain_weights = spec.domains;
  if (threads > 0) job.train.threads = threads;
  job.domains = spec.trained_domains();
  job.resume = resume;
  job.stop_after = stop_after;
  job.partition = spec.partition;
  job.keep_files = {"expert.json"};
  if (spec.mode == ExpertMode::kFlexolmo) {
    job.model = load_model_config(job.init_from);  // the two-expert MoE it was branched as
    job.trainable = flexolmo_trains;
    job.update_masks = flexolmo_update_masks(job.model);
  } else {
    const ParamSelection& trains =
        param_selection(name_of(spec.mode), {"all", "ffn"}, name + " mode");
    if (!trains.all()) {
      job.trainable = [trains](const std::string& param) { return trains.trains(param); };
    }
  }
  try {
    return train(job);
  } catch (const std::exception& e) {
    if (main_rank) write_file_atomic(marker, nlohmann::json{{"error", e.what()}}.dump());
    throw;
  }
}

// ---- status -------------------------------------------------------------------------------

std::optional<nlohmann::json> last_training_record(const fs::path& file) {
  if (!fs::exists(file)) return std::nullopt;
  std::istringstream in(read_file(file));
  std::optional<nlohmann::json> last;
  for (std::string line; std::getline(in, line);) {
    try {
      auto j = nlohmann::json::parse(line);
      if (j.contains("loss")) last = j;
    } catch (const nlohmann::json::parse_error&) {
    }
  }
  return last;
}

double training_eta_seconds(const nlohmann::json& record, int64_t steps, int64_t tokens_per_step) {
  const double tps = record.value("tokens_per_s", 0.0);
  if (steps <= 0 || tokens_per_step <= 0 || !(tps > 0)) return -1;
  const int64_t left = std::max<int64_t>(0, steps - record.value("step", int64_t{0}));
  return static_cast<double>(left * tokens_per_step) / tps;
}

namespace {
StageStatus training_status(const std::string& name, const fs::path& dir, int64_t steps,
                            const fs::path& lock, const fs::path& failed) {
  StageStatus s{name, "not started", 0, 0, 0, ""};
  s.steps = steps;
  if (auto rec = last_training_record(dir / "metrics.jsonl")) {
    s.step = rec->value("step", int64_t{0});
    s.loss = rec->value("loss", 0.0);
  }
  auto state = load_train_state(dir);
  auto h = ExpertLock::holder(lock);
  if (state && state->done) {
    s.state = "done";
  } else if (h && ExpertLock::alive(*h)) {
    s.state = "running";
    s.detail = fmt::format("pid {} on {}", h->value("pid", 0), h->value("host", "?"));
  } else if (fs::exists(failed)) {
    s.state = "failed";
    try {
      s.detail = nlohmann::json::parse(read_file(failed)).value("error", "");
    } catch (const std::exception&) {
    }
  } else if (state || s.step > 0) {
    s.state = "stopped";
    s.detail = state ? fmt::format("checkpoint at step {}; --resume continues", state->step) : "";
  }
  return s;
}
}  // namespace

std::vector<StageStatus> run_status(const RunDir& run) {
  const RunConfig c = load_run(run);
  tidy_run(run);
  std::vector<StageStatus> rows;
  auto done_or_not = [](bool done) { return done ? "done" : "not started"; };
  rows.push_back({"tokenizer", done_or_not(fs::exists(run.tokenizer_file())), 0, 0, 0, ""});
  rows.push_back({"data", done_or_not(fs::exists(run.data() / "manifest.json")), 0, 0, 0, ""});
  rows.push_back(training_status("seed", run.seed(), c.seed_train.steps, run.root / "seed.lock",
                                 run.root / "seed.failed"));
  for (const auto& e : list_experts(run)) {
    rows.push_back(training_status("expert " + e.name, expert_dir(run, e.name),
                                   c.experts.train.steps, expert_lock_file(run, e.name),
                                   failed_marker(run, e.name)));
  }
  return rows;
}

std::string format_status(const std::vector<StageStatus>& rows) {
  std::string out =
      fmt::format("{:<24} {:<12} {:>11} {:>8}  {}\n", "stage", "state", "step", "loss", "detail");
  for (const auto& r : rows) {
    const std::string step = r.steps > 0 ? fmt::format("{}/{}", r.step, r.steps) : "";
    const std::string loss = r.step > 0 ? fmt::format("{:.4f}", r.loss) : "";
    out += fmt::format("{:<24} {:<12} {:>11} {:>8}  {}\n", r.name, r.state, step, loss, r.detail);
  }
  return out;
}

}  // namespace btx
