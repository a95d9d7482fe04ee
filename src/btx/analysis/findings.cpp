#include "btx/analysis/findings.h"

#include <fmt/format.h>

#include "btx/analysis/analysis.h"
#include "btx/analysis/barrier.h"
#include "btx/analysis/divergence.h"
#include "btx/analysis/token_gain.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

std::string percent(double worse, double better) {
  return fmt::format("{:.1f}%", 100.0 * (worse / better - 1.0));
}
double mean(const ResultRow* r) {
  return r->train_mean_ppl;
}
double flops(const ResultRow* r) {
  return static_cast<double>(r->flops_per_token);
}
std::string millions(const ResultRow* r) {
  return fmt::format("{:.2f}M", static_cast<double>(r->training_tokens) / 1e6);
}

// How sure a comparison is: row b against row a on the training (or novel) mean, paired over the
// test windows; "" when the rows did not record their windows.
std::string how_sure(const TableBootstrap& boot, const ResultRow* a, const ResultRow* b,
                     bool novel = false) {
  const auto d = boot.difference(*a, *b, novel);
  if (!d) return "";
  return fmt::format(
      " How sure{}: {} vs {} is {:+.1f}% (95% CI {:+.1f}% to {:+.1f}%, paired over the same test "
      "windows), {}.",
      novel ? " (novel)" : "", b->model, a->model, 100 * d->estimate, 100 * d->ci.lo,
      100 * d->ci.hi,
      d->excludes_zero() ? "an interval that excludes zero"
                         : "an interval that includes zero: these windows do not tell them apart");
}

// The first causal row that fits `is`.
template <typename Pred>
const ResultRow* first(const std::vector<ResultRow>& rows, Pred is) {
  for (const auto& r : rows) {
    if (r.causal && is(r)) return &r;
  }
  return nullptr;
}

// The first causal row of this name.
const ResultRow* row_named(const std::vector<ResultRow>& rows, const std::string& name) {
  return first(rows, [&](const ResultRow& r) { return r.model == name; });
}

nlohmann::json read_if_there(const fs::path& p) {
  return fs::exists(p) ? read_json_file(p) : nlohmann::json();
}

std::optional<std::string> best_on(const std::vector<ResultRow>& rows,
                                   const std::map<std::string, std::string>& best,
                                   const std::string& column, const char* what) {
  auto it = best.find(column);
  if (it == best.end()) return std::nullopt;
  const ResultRow* b = row_named(rows, it->second);
  const double v = column == "train_mean_ppl" ? b->train_mean_ppl : b->novel_mean_ppl;
  return fmt::format("Best on the {} domains: {} (mean perplexity {:.2f}).", what, b->model, v);
}

std::optional<std::string> average_vs_routed(const References& r, const TableBootstrap& boot) {
  if (!r.average || !r.routed) return std::nullopt;
  return fmt::format(
             "Uniform parameter averaging (no routing): {:.2f} on the training domains, {} worse "
             "than the best learned-routing model, {} ({:.2f}).",
             mean(r.average), percent(mean(r.average), mean(r.routed)), r.routed->model,
             mean(r.routed)) +
         how_sure(boot, r.average, r.routed);
}

std::optional<std::string> routed_vs_upcycling(const References& r, const TableBootstrap& boot) {
  if (!r.upcycled || !r.routed) return std::nullopt;
  const ResultRow *routed = r.routed, *up = r.upcycled;
  return fmt::format(
             "{} ({} training tokens) vs sparse upcycling ({}: an MoE of seed copies, no "
             "expert training): {:.2f} vs {:.2f}; the expert training {}.",
             routed->model, millions(routed), millions(up), mean(routed), mean(up),
             mean(routed) < mean(up) ? "is worth " + percent(mean(up), mean(routed))
                                     : std::string("did not pay off")) +
         how_sure(boot, up, routed);
}

std::optional<std::string> routed_vs_ensemble(const References& r, const TableBootstrap& boot) {
  if (!r.ensemble_all || !r.routed) return std::nullopt;
  const ResultRow *routed = r.routed, *ens = r.ensemble_all;
  return fmt::format(
             "{} ({} training tokens) is {} the ensemble of all experts ({}; {:.2f} vs {:.2f}) "
             "at {:.0f}% of its forward FLOPs per token.",
             routed->model, millions(routed),
             mean(routed) <= mean(ens) ? "better than"
                                       : percent(mean(routed), mean(ens)) + " behind",
             millions(ens), mean(routed), mean(ens), 100.0 * flops(routed) / flops(ens)) +
         how_sure(boot, ens, routed);
}

// What routing is worth at equal training compute.
std::optional<std::string> routed_vs_dense_as_many(const References& r,
                                                   const TableBootstrap& boot) {
  if (!r.dense_as_many) return std::nullopt;
  const ResultRow *routed = r.routed, *dense = r.dense_as_many;
  const double fr = routed->training_flops, fd = dense->training_flops;
  return fmt::format(
             "{} vs the dense model trained on as many tokens ({}, {}): {:.2f} vs {:.2f} "
             "on the training domains, {:.2f} vs {:.2f} on the novel domains; in training "
             "FLOPs {:.2f} vs {:.2f} TFLOP ({} the dense model's).",
             routed->model, dense->model, millions(dense), mean(routed), mean(dense),
             routed->novel_mean_ppl, dense->novel_mean_ppl, fr / 1e12, fd / 1e12,
             fr > fd ? percent(fr, fd) + " more than" : percent(fd, fr) + " fewer than") +
         how_sure(boot, dense, routed) + how_sure(boot, dense, routed, /*novel=*/true);
}

std::optional<std::string> ensemble_vs_dense(const References& r, const TableBootstrap& boot) {
  if (!r.ensemble_all || !r.dense_matched) return std::nullopt;
  return fmt::format(
             "The ensemble ({:.2f}) vs the compute-matched dense model ({:.2f}) on the "
             "training domains; on novel domains {:.2f} vs {:.2f}.",
             mean(r.ensemble_all), mean(r.dense_matched), r.ensemble_all->novel_mean_ppl,
             r.dense_matched->novel_mean_ppl) +
         how_sure(boot, r.dense_matched, r.ensemble_all) +
         how_sure(boot, r.dense_matched, r.ensemble_all, /*novel=*/true);
}

// Why merging fails: how far the experts moved and how much of it the average keeps
// (analysis/divergence.json).
std::optional<std::string> divergence_finding(const RunDir& run) {
  const auto s = divergence_summary(read_if_there(divergence_path(run)));
  if (!s) return std::nullopt;
  std::vector<std::string> groups;
  for (const auto& [g, from] : s->group_from_seed) {
    groups.push_back(fmt::format("{} {:.1f}%", g, 100 * from));
  }
  return fmt::format(
      "The experts moved {:.1f}% of the seed's norm from it ({}); their updates are at a mean "
      "cosine of {:.2f}, so the uniform average moved {:.1f}%: it keeps {:.0f}% of an expert's "
      "update.",
      100 * s->mean_from_seed, fmt::join(groups, ", "), s->mean_cosine, 100 * s->mean_update,
      s->mean_from_seed > 0 ? 100 * s->mean_update / s->mean_from_seed : 0.0);
}

// Whether the paths between the experts cross a barrier (analysis/barriers.json).
std::optional<std::string> barrier_finding(const RunDir& run) {
  const auto s = barrier_summary(read_if_there(barriers_path(run)));
  if (!s) return std::nullopt;
  return fmt::format(
      "Along the straight paths between {} pairs of experts the mean test loss rises at most "
      "{:.4f} nats above the line between the ends: {}; on each domain the midpoint (the "
      "pair's average) is {:.1f}% worse on average than the better end.",
      s->expert_pairs, s->max_above_chord,
      s->max_above_chord < 0.01 ? "no barrier, the experts are linearly connected and averaging "
                                  "loses by compromise"
                                : "a barrier",
      100 * s->mean_midpoint_cost);
}

// Which tokens carry a row's gain over the experts' average (analysis/<row>.json).
std::optional<std::string> token_gain_finding(const RunDir& run, const ResultRow* row) {
  if (!row) return std::nullopt;
  const auto a = read_if_there(analysis_path(run, row->model));
  if (!a.contains("token_gain")) return std::nullopt;
  const auto g = gain_concentration(a.at("token_gain"));
  if (!g) return std::nullopt;
  const std::string novel =
      g->novel_top_share ? fmt::format(" (novel domains: {:.1f}%)", 100 * *g->novel_top_share) : "";
  return fmt::format(
      "{}'s gain over the experts' average is {:.3f} nats per test token; the {:.0f}% of tokens "
      "where the seed is least sure carry {:.1f}% of it, where {:.0f}% would mean no "
      "concentration{}.",
      row->model, g->gain, 100 * g->top_fraction, 100 * g->top_share, 100 * g->top_fraction, novel);
}

}  // namespace

References find_references(const RunDir& run, const std::vector<ResultRow>& rows) {
  // A model of this run's own merged/ (not of the random-split sub-run).
  const auto merged = fs::absolute(run.root / "merged").lexically_normal();
  auto own = [&](const ResultRow& r) {
    return fs::absolute(r.dir).lexically_normal().parent_path() == merged;
  };
  References refs;
  refs.average = first(rows, [](const ResultRow& r) { return r.facts.method == "average"; });
  refs.ensemble_all = first(rows, [&](const ResultRow& r) {
    return r.facts.ensemble && r.facts.ensemble_top_k == 0 && own(r);
  });
  refs.dense_matched = first(rows, [](const ResultRow& r) {
    const auto match = r.facts.params.find("match");
    return r.facts.method == "dense" && match != r.facts.params.end() && match->second == "experts";
  });
  refs.upcycled =
      first(rows, [](const ResultRow& r) { return r.facts.learned && !r.facts.from_experts; });
  for (const auto& r : rows) {
    const bool learned = r.facts.learned && r.facts.from_experts;
    if (learned && r.causal && (!refs.routed || mean(&r) < mean(refs.routed))) refs.routed = &r;
  }
  if (refs.routed) {
    refs.dense_as_many = first(rows, [&](const ResultRow& r) {
      return r.facts.method == "dense" && r.training_tokens == refs.routed->training_tokens;
    });
  }
  return refs;
}

std::optional<PairedDifference> TableBootstrap::difference(const ResultRow& a, const ResultRow& b,
                                                           bool novel) const {
  const auto& boot = novel ? this->novel : train;
  if (!boot) return std::nullopt;
  return novel ? boot->relative_difference(a.novel_windows, b.novel_windows)
               : boot->relative_difference(a.train_windows, b.train_windows);
}

std::vector<std::string> study_findings(const RunDir& run, const std::vector<ResultRow>& rows,
                                        const References& refs,
                                        const std::map<std::string, std::string>& best,
                                        const TableBootstrap& boot) {
  const std::optional<std::string> all[] = {
      best_on(rows, best, "train_mean_ppl", "training"),
      average_vs_routed(refs, boot),
      routed_vs_upcycling(refs, boot),
      routed_vs_ensemble(refs, boot),
      routed_vs_dense_as_many(refs, boot),
      ensemble_vs_dense(refs, boot),
      divergence_finding(run),
      barrier_finding(run),
      token_gain_finding(run, refs.routed),
      token_gain_finding(run, refs.ensemble_all),
      best_on(rows, best, "novel_mean_ppl", "novel"),
  };
  std::vector<std::string> out;
  for (const auto& f : all) {
    if (f) out.push_back(*f);
  }
  return out;
}

}  // namespace btx
