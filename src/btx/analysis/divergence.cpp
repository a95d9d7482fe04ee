#include "btx/analysis/divergence.h"

#include <fmt/format.h>

#include <cmath>
#include <map>

#include "btx/analysis/graft.h"
#include "btx/merge/method.h"
#include "btx/merge/param_average.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

// The squared norm of the seed's parameters of a cell and the Gram matrix of the updates.
struct Accumulator {
  double seed_sq = 0;
  std::vector<std::vector<double>> gram;

  void add(double sq, const torch::Tensor& g /* (E, E) float64 */) {
    const auto E = static_cast<size_t>(g.size(0));
    if (gram.empty()) gram.assign(E, std::vector<double>(E, 0.0));
    seed_sq += sq;
    const double* p = g.data_ptr<double>();
    for (size_t a = 0; a < E; ++a) {
      for (size_t b = 0; b < E; ++b) gram[a][b] += p[a * E + b];
    }
  }
};

nlohmann::json mean_or_null(double sum, int64_t n) {
  return n > 0 ? nlohmann::json(sum / static_cast<double>(n)) : nlohmann::json(nullptr);
}

}  // namespace

int param_layer(const std::string& name) {
  static const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return -1;
  const size_t end = name.find('.', prefix.size());
  const auto layer = parse_integer(name.substr(prefix.size(), end - prefix.size()));
  BTX_CHECK(layer && *layer >= 0, "parameter '{}': no layer number after '{}'", name, prefix);
  return static_cast<int>(*layer);
}

nlohmann::json divergence_cell(double seed_sq, const std::vector<std::vector<double>>& gram) {
  const size_t E = gram.size();
  BTX_CHECK(E >= 1 && seed_sq > 0,
            "divergence_cell: {} experts and a seed of squared norm {} (expected >= 1 and > 0)", E,
            seed_sq);
  const double seed_norm = std::sqrt(seed_sq);
  std::vector<double> from_seed(E);
  std::vector<std::vector<double>> between(E, std::vector<double>(E, 0.0)),
      cosine(E, std::vector<double>(E, 0.0));
  double mean_sq = 0, sum_from = 0, sum_between = 0, sum_cos = 0;
  int64_t pairs = 0;
  for (size_t a = 0; a < E; ++a) {
    from_seed[a] = std::sqrt(std::max(gram[a][a], 0.0)) / seed_norm;
    sum_from += from_seed[a];
    for (size_t b = 0; b < E; ++b) {
      mean_sq += gram[a][b];
      const double d2 = gram[a][a] + gram[b][b] - 2 * gram[a][b];
      between[a][b] = a == b ? 0.0 : std::sqrt(std::max(d2, 0.0)) / seed_norm;
      const double norms = std::sqrt(gram[a][a] * gram[b][b]);
      cosine[a][b] = norms > 0 ? gram[a][b] / norms : 0.0;
      if (a < b) {
        sum_between += between[a][b];
        sum_cos += cosine[a][b];
        ++pairs;
      }
    }
  }
  const double n = static_cast<double>(E);
  return {{"seed_norm", seed_norm},
          {"from_seed", from_seed},
          {"between", between},
          {"cosine", cosine},
          {"mean_update", std::sqrt(std::max(mean_sq, 0.0)) / n / seed_norm},
          {"mean_from_seed", sum_from / n},
          {"mean_between", mean_or_null(sum_between, pairs)},
          {"mean_cosine", mean_or_null(sum_cos, pairs)}};
}

nlohmann::json divergence_analysis(const RunDir& run) {
  torch::NoGradGuard no_grad;
  const auto experts = trained_experts(run);
  const std::string seed_sha = sha256_file(run.seed() / "model.safetensors");
  std::vector<WeightedCheckpoint> inputs = {{run.seed(), 1.0}};
  std::vector<std::string> names;
  for (const auto& e : experts) {
    const auto init = read_json_file(e.dir / "expert.json").value("init", nlohmann::json::object());
    const std::string sha = init.value("seed_sha256", "");
    BTX_CHECK(sha.empty() || sha == seed_sha,
              "expert '{}' was branched from another seed than {} (seed sha256 {}... vs {}...): "
              "its distance from this seed means nothing",
              e.name, run.seed().string(), sha.substr(0, 12), seed_sha.substr(0, 12));
    inputs.push_back({e.dir, 1.0});
    names.push_back(e.name);
  }
  // Opens every checkpoint and checks that they share one architecture and one set of tensors.
  const CheckpointAverager ckpts(inputs, "the divergence analysis");
  const auto& groups = graft_groups();

  std::map<std::pair<int, int>, Accumulator> cells;  // (layer, group); layer -1: model-level
  std::vector<Accumulator> by_group(groups.size());
  Accumulator total;
  for (const auto& [name, spec] : ckpts.layout()) {
    const int group = param_group(name);
    BTX_CHECK(group >= 0, "{}: parameter '{}' is a router: divergence compares dense experts",
              experts.front().dir.string(), name);
    const auto seed = ckpts.read(0, name).to(torch::kFloat64).reshape({-1});
    std::vector<torch::Tensor> updates;
    for (size_t e = 0; e < experts.size(); ++e) {
      updates.push_back(ckpts.read(e + 1, name).to(torch::kFloat64).reshape({-1}) - seed);
    }
    const auto D = torch::stack(updates);  // (E, n)
    const auto gram = D.matmul(D.t()).contiguous();
    const double sq = seed.dot(seed).item<double>();
    cells[{param_layer(name), group}].add(sq, gram);
    by_group[static_cast<size_t>(group)].add(sq, gram);
    total.add(sq, gram);
  }

  nlohmann::json out_cells = nlohmann::json::array();
  // Model-level cells (layer -1) last, after the blocks in order.
  std::vector<std::pair<std::pair<int, int>, const Accumulator*>> order;
  for (const auto& [key, acc] : cells) order.push_back({key, &acc});
  std::stable_partition(order.begin(), order.end(),
                        [](const auto& o) { return o.first.first >= 0; });
  for (const auto& [key, acc] : order) {
    if (acc->seed_sq <= 0) continue;  // all-zero seed parameters: no scale to measure against
    nlohmann::json cell = divergence_cell(acc->seed_sq, acc->gram);
    cell["layer"] = key.first >= 0 ? nlohmann::json(key.first) : nlohmann::json("model");
    cell["group"] = groups[static_cast<size_t>(key.second)];
    out_cells.push_back(cell);
  }
  nlohmann::json out_groups = nlohmann::json::object();
  for (size_t g = 0; g < groups.size(); ++g) {
    if (by_group[g].seed_sq > 0)
      out_groups[groups[g]] = divergence_cell(by_group[g].seed_sq, by_group[g].gram);
  }
  return {{"experts", names},
          {"groups", groups},
          {"cells", out_cells},
          {"by_group", out_groups},
          {"total", divergence_cell(total.seed_sq, total.gram)}};
}

std::string format_divergence(const nlohmann::json& r) {
  auto num = [](const nlohmann::json& v, const char* f) {
    return v.is_null() ? std::string("-") : fmt::format(fmt::runtime(f), v.get<double>());
  };
  std::string out = fmt::format(
      "How far the experts ({}) moved from the seed, relative to the seed's norm\n"
      "  from seed: mean over experts of |θ_e - θ_seed| / |θ_seed|\n"
      "  between:   mean over pairs of |θ_a - θ_b| / |θ_seed|\n"
      "  cosine:    mean over pairs of the cosine between the updates θ_e - θ_seed\n"
      "  average:   the uniform average's distance from the seed, |mean update| / |θ_seed|\n\n",
      fmt::join(r.at("experts").get<std::vector<std::string>>(), ", "));
  out += fmt::format("{:<8}{:<11}{:>11}{:>11}{:>9}{:>10}\n", "layer", "group", "from seed",
                     "between", "cosine", "average");
  auto row = [&](const std::string& layer, const std::string& group, const nlohmann::json& c) {
    return fmt::format("{:<8}{:<11}{:>11}{:>11}{:>9}{:>10}\n", layer, group,
                       num(c.at("mean_from_seed"), "{:.4f}"), num(c.at("mean_between"), "{:.4f}"),
                       num(c.at("mean_cosine"), "{:.3f}"), num(c.at("mean_update"), "{:.4f}"));
  };
  for (const auto& c : r.at("cells")) {
    const auto& l = c.at("layer");
    out += row(l.is_string() ? l.get<std::string>() : std::to_string(l.get<int>()),
               c.at("group").get<std::string>(), c);
  }
  out += "\n";
  for (const auto& [g, c] : r.at("by_group").items()) out += row("all", g, c);
  out += row("all", "total", r.at("total"));
  return out;
}

fs::path divergence_path(const RunDir& run) {
  return run.root / "analysis" / "divergence.json";
}

std::optional<DivergenceSummary> divergence_summary(const nlohmann::json& result) {
  if (!result.contains("total")) return std::nullopt;
  const auto& t = result.at("total");
  DivergenceSummary s;
  s.mean_from_seed = t.at("mean_from_seed").get<double>();
  s.mean_cosine = t.at("mean_cosine").is_null() ? 0.0 : t.at("mean_cosine").get<double>();
  s.mean_update = t.at("mean_update").get<double>();
  const auto by_group = result.value("by_group", nlohmann::json::object());  // kept alive
  for (const auto& [g, c] : by_group.items()) {
    s.group_from_seed.emplace_back(g, c.at("mean_from_seed").get<double>());
  }
  return s;
}

}  // namespace btx
