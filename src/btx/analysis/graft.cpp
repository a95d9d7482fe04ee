#include "btx/analysis/graft.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "btx/data/shards.h"
#include "btx/eval/evaluate.h"
#include "btx/model/param_roles.h"
#include "btx/run/experts.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"

namespace btx {

const std::vector<std::string>& graft_groups() {
  static const std::vector<std::string> groups = {"embedding", "attention", "norms", "ffn"};
  return groups;
}

int param_group(const std::string& param) {
  switch (param_role(param)) {
    case ParamRole::kEmbedding:
    case ParamRole::kLmHead:
      return 0;
    case ParamRole::kAttention:
      return 1;
    case ParamRole::kNorm:
      return 2;
    case ParamRole::kFfn:
      return 3;
    case ParamRole::kRouter:
      break;
  }
  return -1;
}

int graft_group(const std::string& param) {
  const int g = param_group(param);
  BTX_CHECK(g >= 0, "parameter '{}' is a router: grafting takes dense checkpoints", param);
  return g;
}

std::vector<double> shapley_values(const std::vector<double>& value, int n) {
  BTX_CHECK(n >= 1 && n < 20 && value.size() == (size_t{1} << n),
            "shapley_values: {} coalition values for {} players (expected 2^{})", value.size(), n,
            n);
  // weight(s) = s! (n - s - 1)! / n!: the share of orderings in which the s players of a
  // coalition come before player g and the others after it.
  std::vector<double> weight(n);
  for (int s = 0; s < n; ++s) {
    weight[s] = std::exp(std::lgamma(s + 1.0) + std::lgamma(n - s + 0.0) - std::lgamma(n + 1.0));
  }
  std::vector<double> phi(n, 0.0);
  for (size_t mask = 0; mask < value.size(); ++mask) {
    const int size = __builtin_popcount(static_cast<unsigned>(mask));
    for (int g = 0; g < n; ++g) {
      if (mask & (size_t{1} << g)) continue;
      phi[g] += weight[size] * (value[mask | (size_t{1} << g)] - value[mask]);
    }
  }
  return phi;
}

namespace {

using Params = std::vector<std::pair<std::string, torch::Tensor>>;

Params named_params(const CausalLM& model) {
  Params out;
  for (const auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

// The run's finished dense experts, each loaded.
struct LoadedExpert {
  ExpertSpec spec;
  CausalLM model{nullptr};
};

std::vector<LoadedExpert> load_experts(const RunDir& run) {
  std::vector<LoadedExpert> out;
  for (const auto& spec : list_experts(run)) {
    const fs::path dir = expert_dir(run, spec.name);
    const auto state = load_train_state(dir);
    BTX_CHECK(state && state->done,
              "expert '{}' ({}) has not finished training: grafting needs every expert trained "
              "(btx train --run {} --expert {})",
              spec.name, dir.string(), run.root.string(), spec.name);
    BTX_CHECK(dense_experts(spec.mode),
              "expert '{}' was trained in mode '{}': grafting takes dense experts (mode all or "
              "ffn)",
              spec.name, name_of(spec.mode));
    out.push_back({spec, load_model(dir)});
  }
  BTX_CHECK(!out.empty(), "run {} has no experts to graft", run.root.string());
  return out;
}

// The reference's parameters: the uniform mean of the experts' (accumulated in float64), or a
// dense model's (the seed, a merged model of the run).
std::map<std::string, torch::Tensor> reference_params(const RunDir& run,
                                                      const std::vector<LoadedExpert>& experts,
                                                      const std::string& reference) {
  std::map<std::string, torch::Tensor> out;
  if (reference != "average") {
    const fs::path dir = reference == "seed" ? run.seed() : run.root / reference;
    BTX_CHECK(is_checkpoint(dir),
              "--reference '{}': expected average, seed or a dense model of the run such as "
              "merged/fisher ({} is not a checkpoint)",
              reference, dir.string());
    const CausalLM model = load_model(dir);
    BTX_CHECK(!model->config().is_routed() && !model->config().has_attention_experts(),
              "--reference '{}' is a {} model: grafting swaps the tensors of dense models",
              reference, name_of(model->config().model_type));
    for (const auto& [name, t] : named_params(model)) out[name] = t.detach().clone();
    return out;
  }
  for (const auto& e : experts) {
    for (const auto& [name, t] : named_params(e.model)) {
      auto d = t.detach().to(torch::kFloat64);
      auto it = out.find(name);
      if (it == out.end()) {
        out[name] = d.clone();
      } else {
        it->second.add_(d);
      }
    }
  }
  for (auto& [name, t] : out) t = (t / static_cast<double>(experts.size())).to(torch::kFloat32);
  return out;
}

// The expert of each training domain: the one expert whose mixture includes it.
std::map<std::string, size_t> domain_owner(const std::vector<LoadedExpert>& experts,
                                           const std::vector<std::string>& domains) {
  std::map<std::string, size_t> owner;
  for (const auto& d : domains) {
    std::vector<std::string> names;
    for (size_t i = 0; i < experts.size(); ++i) {
      const auto own = experts[i].spec.trained_domains();
      if (std::find(own.begin(), own.end(), d) != own.end()) {
        owner[d] = i;
        names.push_back(experts[i].spec.name);
      }
    }
    BTX_CHECK(names.size() == 1,
              "domain '{}' is trained by {} experts ({}): grafting compares each domain's own "
              "expert with the reference, so each domain needs exactly one (a domain split)",
              d, names.size(), fmt::join(names, ", "));
  }
  return owner;
}

nlohmann::json group_object(const std::vector<double>& v) {
  nlohmann::json o = nlohmann::json::object();
  for (size_t g = 0; g < v.size(); ++g) o[graft_groups()[g]] = v[g];
  return o;
}

nlohmann::json mask_groups(size_t mask) {
  nlohmann::json a = nlohmann::json::array();
  for (size_t g = 0; g < graft_groups().size(); ++g) {
    if (mask & (size_t{1} << g)) a.push_back(graft_groups()[g]);
  }
  return a;
}

// The reference and expert ends of the hybrids' losses (by mask), the gap between them and each
// group's Shapley share of it.
nlohmann::json attribution(const std::vector<double>& loss) {
  const int n = static_cast<int>(graft_groups().size());
  std::vector<double> value(loss.size());
  for (size_t m = 0; m < loss.size(); ++m) value[m] = loss[0] - loss[m];
  const auto phi = shapley_values(value, n);
  const double gap = value.back();
  std::vector<double> share(n);
  for (int g = 0; g < n; ++g) share[g] = gap != 0 ? phi[g] / gap : 0.0;
  return {{"reference_ppl", std::exp(loss.front())},
          {"expert_ppl", std::exp(loss.back())},
          {"gap", gap},
          {"shapley", group_object(phi)},
          {"share", group_object(share)}};
}

}  // namespace

nlohmann::json graft_analysis(const Run& run, const GraftOptions& opts) {
  const RunConfig& c = run.config();
  torch::NoGradGuard no_grad;
  const auto experts = load_experts(run);
  const auto reference = reference_params(run, experts, opts.reference);
  const ShardSet& data = run.shards();
  const auto domains = data.domains();
  const auto owner = domain_owner(experts, domains);
  const auto eval = run_eval_options(c, "test");
  const int n = static_cast<int>(graft_groups().size());
  const size_t masks = size_t{1} << n;

  // One working model whose parameters each hybrid overwrites.
  ModelScorer scorer(load_model(expert_dir(run, experts[0].spec.name)));
  const Params work = named_params(scorer.model());
  std::vector<int> group(work.size());
  for (size_t i = 0; i < work.size(); ++i) {
    group[i] = graft_group(work[i].first);
    const auto it = reference.find(work[i].first);
    BTX_CHECK(it != reference.end() && it->second.sizes() == work[i].second.sizes(),
              "the reference {} has no parameter '{}' of shape {} (a model of another "
              "architecture)",
              opts.reference, work[i].first, fmt::join(work[i].second.sizes(), "x"));
  }

  nlohmann::json per_domain = nlohmann::json::array();
  std::vector<double> mean_loss(masks, 0.0);
  int64_t tokens = 0;
  for (const auto& d : domains) {
    const LoadedExpert& e = experts[owner.at(d)];
    const Params own = named_params(e.model);
    const auto& shard = data.shard(d, "test");
    const torch::Tensor stream = shard.slice(0, shard.size());
    std::vector<double> loss(masks);
    nlohmann::json hybrids = nlohmann::json::array();
    for (size_t mask = 0; mask < masks; ++mask) {
      for (size_t i = 0; i < work.size(); ++i) {
        BTX_CHECK(own[i].first == work[i].first && own[i].second.sizes() == work[i].second.sizes(),
                  "expert '{}' has '{}' {} where '{}' {} was expected (experts of different "
                  "architectures)",
                  e.spec.name, own[i].first, fmt::join(own[i].second.sizes(), "x"), work[i].first,
                  fmt::join(work[i].second.sizes(), "x"));
        const bool from_expert = mask & (size_t{1} << group[i]);
        work[i].second.copy_(from_expert ? own[i].second : reference.at(work[i].first));
      }
      const DomainScore s =
          score_stream(scorer, stream, eval.seq_len, eval.batch_size, opts.max_tokens);
      tokens = s.tokens;
      loss[mask] = s.loss;
      mean_loss[mask] += s.loss / static_cast<double>(domains.size());
      hybrids.push_back({{"from_expert", mask_groups(mask)}, {"loss", s.loss}, {"ppl", s.ppl()}});
    }
    nlohmann::json row = attribution(loss);
    row["domain"] = d;
    row["expert"] = e.spec.name;
    row["hybrids"] = hybrids;
    per_domain.push_back(row);
  }

  nlohmann::json mean = attribution(mean_loss);
  mean["hybrids"] = nlohmann::json::array();
  for (size_t m = 0; m < masks; ++m) {
    mean["hybrids"].push_back({{"from_expert", mask_groups(m)}, {"ppl", std::exp(mean_loss[m])}});
  }
  return {{"reference", opts.reference},
          {"groups", graft_groups()},
          {"tokens", tokens},
          {"domains", per_domain},
          {"mean", mean}};
}

std::string format_graft(const nlohmann::json& r) {
  const auto& groups = graft_groups();
  const size_t all = (size_t{1} << groups.size()) - 1;
  const std::string ref = r.at("reference").get<std::string>();
  std::string out = fmt::format(
      "Each domain's own expert and the {} ({} test tokens per domain): perplexity with one "
      "parameter group given back to the reference (+) or taken from the expert (-)\n\n",
      ref == "average" ? "uniform average of the experts" : ref, r.at("tokens").get<int64_t>());
  out += fmt::format("{:<14}{:>10}", "domain", ref);
  for (const auto& g : groups) out += fmt::format("{:>12}", "+" + g);
  out += fmt::format("{:>10}", "expert");
  for (const auto& g : groups) out += fmt::format("{:>12}", "-" + g);
  out += "\n";
  auto row = [&](const std::string& name, const nlohmann::json& hybrids) {
    std::string line = fmt::format("{:<14}{:>10.2f}", name, hybrids[0].at("ppl").get<double>());
    for (size_t g = 0; g < groups.size(); ++g) {
      line += fmt::format("{:>12.2f}", hybrids[size_t{1} << g].at("ppl").get<double>());
    }
    line += fmt::format("{:>10.2f}", hybrids[all].at("ppl").get<double>());
    for (size_t g = 0; g < groups.size(); ++g) {
      line += fmt::format("{:>12.2f}", hybrids[all & ~(size_t{1} << g)].at("ppl").get<double>());
    }
    return line + "\n";
  };
  for (const auto& d : r.at("domains")) out += row(d.at("domain"), d.at("hybrids"));
  out += row("mean (geo)", r.at("mean").at("hybrids"));

  out += "\nShapley share of the loss gap (reference - expert, nats) over the 16 hybrids\n\n";
  out += fmt::format("{:<14}{:>10}", "domain", "gap");
  for (const auto& g : groups) out += fmt::format("{:>12}", g);
  out += "\n";
  auto shares = [&](const std::string& name, const nlohmann::json& x) {
    std::string line = fmt::format("{:<14}{:>10.4f}", name, x.at("gap").get<double>());
    for (const auto& g : groups) {
      line += fmt::format("{:>11.1f}%", 100.0 * x.at("share").at(g).get<double>());
    }
    return line + "\n";
  };
  for (const auto& d : r.at("domains")) out += shares(d.at("domain"), d);
  out += shares("mean", r.at("mean"));
  return out;
}

fs::path graft_path(const RunDir& run, const std::string& reference) {
  const std::string name =
      reference == "average" || reference == "seed" ? reference : eval_name(run.root / reference);
  return run.root / "analysis" / ("graft-" + name + ".json");
}

}  // namespace btx
