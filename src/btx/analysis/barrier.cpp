#include "btx/analysis/barrier.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "btx/data/shards.h"
#include "btx/eval/evaluate.h"
#include "btx/merge/method.h"
#include "btx/merge/param_average.h"
#include "btx/run/model_folder.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

double barrier_height(const std::vector<double>& loss) {
  BTX_CHECK(loss.size() >= 2, "a loss barrier needs at least 2 points, got {}", loss.size());
  return *std::max_element(loss.begin(), loss.end()) - (loss.front() + loss.back()) / 2;
}

double barrier_above_chord(const std::vector<double>& loss) {
  BTX_CHECK(loss.size() >= 2, "a loss barrier needs at least 2 points, got {}", loss.size());
  const double n = static_cast<double>(loss.size() - 1);
  double out = 0;  // the ends lie on the chord
  for (size_t i = 0; i < loss.size(); ++i) {
    const double alpha = static_cast<double>(i) / n;
    out = std::max(out, loss[i] - ((1 - alpha) * loss.front() + alpha * loss.back()));
  }
  return out;
}

namespace {

// The seed a model was branched from, as the sha256 of its weights: an expert's is recorded in
// its expert.json; a plain checkpoint (a seed, an imported model) is its own origin; a merge's is
// not known ("").
std::string origin_of(const fs::path& dir) {
  if (fs::exists(dir / "expert.json")) {
    return read_json_file(dir / "expert.json")
        .value("init", nlohmann::json::object())
        .value("seed_sha256", "");
  }
  if (fs::exists(dir / "merge.json")) return "";
  return sha256_file(dir / "model.safetensors");
}

// Scores models along straight paths on the training domains' test text; the loss of a path's
// ends is kept, so paths that share a model score it once.
class PathScorer {
 public:
  PathScorer(const Run& run, const BarrierOptions& opts)
      : run_(run), data_(run.shards()), eval_(run_eval_options(run.config(), "test")), opts_(opts) {
    BTX_CHECK(opts.points >= 2 && opts.points <= 1001,
              "--points {}: expected 2 to 1001 points along the path (both ends included)",
              opts.points);
    BTX_CHECK(opts.max_tokens >= 0, "--tokens {}: expected >= 0 (0: the whole test split)",
              opts.max_tokens);
  }

  nlohmann::json path(const std::string& a, const std::string& b) {
    torch::NoGradGuard no_grad;
    const fs::path da = resolve_model_path(run_, a), db = resolve_model_path(run_, b);
    for (const auto& [name, dir] : {std::pair{a, da}, std::pair{b, db}}) {
      BTX_CHECK(is_checkpoint(dir),
                "{} ({}) is not a checkpoint (an ensemble keeps its experts apart): a loss "
                "barrier interpolates the weights of two models",
                name, dir.string());
    }
    // The same architecture and tensors (names, shapes, dtypes), or an error naming both.
    CheckpointAverager({{da, 1.0}, {db, 1.0}}, fmt::format("the path from {} to {}", a, b));
    const std::string oa = origin_of(da), ob = origin_of(db);
    BTX_CHECK(oa.empty() || ob.empty() || oa == ob,
              "{} and {} come from different seeds (seed sha256 {}... vs {}...): the straight path "
              "between independently initialised models says nothing about merging them",
              a, b, oa.substr(0, 12), ob.substr(0, 12));

    const CausalLM ma = load_model(da), mb = load_model(db);
    ModelScorer scorer(load_model(da));
    std::vector<torch::Tensor> work, pa, pb;
    for (const auto& p : scorer.model()->parameters()) work.push_back(p);
    for (const auto& p : ma->parameters()) pa.push_back(p.detach());
    for (const auto& p : mb->parameters()) pb.push_back(p.detach());

    const auto domains = data_.domains();
    const auto P = static_cast<size_t>(opts_.points);
    std::vector<std::vector<double>> loss(domains.size(), std::vector<double>(P));
    std::vector<double> alphas(P);
    for (size_t i = 0; i < P; ++i) {
      const double alpha = static_cast<double>(i) / static_cast<double>(P - 1);
      alphas[i] = alpha;
      const fs::path& end = i == 0 ? da : db;
      const bool is_end = i == 0 || i + 1 == P;
      if (is_end && ends_.count(key(end))) {
        for (size_t d = 0; d < domains.size(); ++d) loss[d][i] = ends_[key(end)][d];
        continue;
      }
      // The ends are the models exactly; the points between, (1-α)·θ_a + α·θ_b.
      for (size_t k = 0; k < work.size(); ++k) {
        if (i == 0) {
          work[k].copy_(pa[k]);
        } else if (i + 1 == P) {
          work[k].copy_(pb[k]);
        } else {
          work[k].copy_(pa[k] * (1 - alpha) + pb[k] * alpha);
        }
      }
      for (size_t d = 0; d < domains.size(); ++d) {
        const auto& shard = data_.shard(domains[d], "test");
        const DomainScore s = score_stream(scorer, shard.slice(0, shard.size()), eval_.seq_len,
                                           eval_.batch_size, opts_.max_tokens);
        loss[d][i] = s.loss;
        tokens_ = s.tokens;
      }
      if (is_end) {
        auto& cached = ends_[key(end)];
        for (size_t d = 0; d < domains.size(); ++d) cached.push_back(loss[d][i]);
      }
    }

    auto curve = [&](const std::vector<double>& l) {
      std::vector<double> ppl(l.size());
      std::transform(l.begin(), l.end(), ppl.begin(), [](double x) { return std::exp(x); });
      return nlohmann::json{{"loss", l},
                            {"ppl", ppl},
                            {"barrier", barrier_height(l)},
                            {"barrier_linear", barrier_above_chord(l)}};
    };
    nlohmann::json per_domain = nlohmann::json::array();
    std::vector<double> mean(P, 0.0);
    for (size_t d = 0; d < domains.size(); ++d) {
      auto row = curve(loss[d]);
      row["domain"] = domains[d];
      per_domain.push_back(row);
      for (size_t i = 0; i < P; ++i) mean[i] += loss[d][i] / static_cast<double>(domains.size());
    }
    return {{"a", eval_name(da)}, {"b", eval_name(db)},    {"alphas", alphas},
            {"tokens", tokens_},  {"domains", per_domain}, {"mean", curve(mean)}};
  }

  int64_t tokens() const { return tokens_; }

 private:
  static std::string key(const fs::path& dir) { return fs::weakly_canonical(dir).string(); }

  const Run& run_;
  const ShardSet& data_;
  const EvalOptions eval_;
  const BarrierOptions opts_;
  std::map<std::string, std::vector<double>> ends_;  // a model's loss per domain
  int64_t tokens_ = 0;
};

}  // namespace

nlohmann::json loss_barrier(const Run& run, const std::string& a, const std::string& b,
                            const BarrierOptions& opts) {
  PathScorer scorer(run, opts);
  return scorer.path(a, b);
}

nlohmann::json expert_barriers(const Run& run, const BarrierOptions& opts) {
  const auto experts = trained_experts(run);  // finished, one seed, one architecture
  PathScorer scorer(run, opts);
  nlohmann::json paths = nlohmann::json::array();
  for (size_t i = 0; i < experts.size(); ++i) {
    for (size_t j = i + 1; j < experts.size(); ++j) {
      paths.push_back(scorer.path("experts/" + experts[i].name, "experts/" + experts[j].name));
    }
  }
  for (const auto& e : experts) paths.push_back(scorer.path("seed", "experts/" + e.name));
  return {{"points", opts.points}, {"tokens", scorer.tokens()}, {"paths", paths}};
}

std::string format_barrier(const nlohmann::json& p) {
  std::string out = fmt::format("Test perplexity along (1-α)·{} + α·{} ({} tokens per domain)\n\n",
                                p.at("a").get<std::string>(), p.at("b").get<std::string>(),
                                p.at("tokens").get<int64_t>());
  out += fmt::format("{:<14}", "α");
  for (double a : p.at("alphas").get<std::vector<double>>()) out += fmt::format("{:>9.3f}", a);
  out += fmt::format("{:>10}{:>10}\n", "barrier", "vs chord");
  auto row = [&](const std::string& name, const nlohmann::json& r) {
    std::string line = fmt::format("{:<14}", name);
    for (double x : r.at("ppl").get<std::vector<double>>()) line += fmt::format("{:>9.2f}", x);
    return line + fmt::format("{:>10.4f}{:>10.4f}\n", r.at("barrier").get<double>(),
                              r.at("barrier_linear").get<double>());
  };
  for (const auto& d : p.at("domains")) out += row(d.at("domain").get<std::string>(), d);
  out += row("mean loss", p.at("mean"));
  out +=
      "\nbarrier: max loss on the path - the mean of the ends' (nats); vs chord: max of the "
      "loss above the straight line between the ends' losses\n";
  return out;
}

std::string format_barriers(const nlohmann::json& r) {
  std::string out = fmt::format(
      "Loss barriers between the experts and from the seed ({} points, {} test tokens per "
      "domain): the mean loss over the training domains along each path\n\n",
      r.at("points").get<int64_t>(), r.at("tokens").get<int64_t>());
  out += fmt::format("{:<40}{:>10}{:>10}{:>10}{:>10}{:>10}\n", "path", "ppl(a)", "ppl(mid)",
                     "ppl(b)", "barrier", "vs chord");
  for (const auto& p : r.at("paths")) {
    const auto ppl = p.at("mean").at("ppl").get<std::vector<double>>();
    out += fmt::format("{:<40}{:>10.2f}{:>10.2f}{:>10.2f}{:>10.4f}{:>10.4f}\n",
                       p.at("a").get<std::string>() + " -> " + p.at("b").get<std::string>(),
                       ppl.front(), ppl[ppl.size() / 2], ppl.back(),
                       p.at("mean").at("barrier").get<double>(),
                       p.at("mean").at("barrier_linear").get<double>());
  }
  return out;
}

fs::path barrier_path(const RunDir& run, const std::string& a, const std::string& b) {
  return run.root / "analysis" /
         ("barrier-" + eval_name(resolve_model_path(run, a)) + "--" +
          eval_name(resolve_model_path(run, b)) + ".json");
}

fs::path barriers_path(const RunDir& run) {
  return run.root / "analysis" / "barriers.json";
}

std::optional<BarrierSummary> barrier_summary(const nlohmann::json& result) {
  if (!result.contains("paths")) return std::nullopt;
  BarrierSummary s;
  double mid_cost = 0;
  int64_t cells = 0;
  for (const auto& p : result.at("paths")) {
    s.max_above_chord =
        std::max(s.max_above_chord, p.at("mean").at("barrier_linear").get<double>());
    if (p.at("a") == "seed") continue;
    ++s.expert_pairs;
    for (const auto& d : p.at("domains")) {
      const auto ppl = d.at("ppl").get<std::vector<double>>();
      mid_cost += ppl[ppl.size() / 2] / std::min(ppl.front(), ppl.back()) - 1;
      ++cells;
    }
  }
  if (s.expert_pairs == 0 || cells == 0) return std::nullopt;
  s.mean_midpoint_cost = mid_cost / static_cast<double>(cells);
  return s;
}

}  // namespace btx
