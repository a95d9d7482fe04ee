// [study] parsed and checked against the merge registry: the methods entries, the domains, the
// models of the results table, and the default config (configs/tiny.toml, built in).
#include <optional>
#include <set>
#include <sstream>

#include "btx/corpus/corpus.h"
#include "btx/corpus/corpus_build.h"
#include "btx/merge/finetune.h"
#include "btx/merge/method.h"
#include "btx/model/param_roles.h"
#include "btx/study/study.h"
#include "btx/study/sub_runs.h"
#include "btx/util/error.h"

namespace btx {

namespace {
// A [study] methods entry after its method: `btx merge`'s arguments and the finetuning of its
// result.
struct StudyEntry {
  MergeArgs merge;
  std::optional<std::string> finetune;        // what trains after merging ("none": nothing)
  std::optional<std::string> finetune_steps;  // the finetuning budget in steps
  std::vector<std::string> proxies;           // finetune on proxies from these pool domains
  template <typename V>
  void visit(V& v) {
    merge.visit(v);
    v.option("--finetune", finetune, "what `btx finetune --train` trains, or none");
    v.option("--finetune-steps", finetune_steps, "finetuning steps instead of [finetune] steps");
    v.option("--proxies", proxies, "finetune on MetaMoE's proxies from these pool domains");
  }
};

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}
}  // namespace

// ---- [study] --------------------------------------------------------------------------------

std::vector<StudyMethod> study_methods(const RunConfig& c) {
  std::vector<StudyMethod> out;
  std::set<std::string> names = {"seed", kRandomSplit};
  for (const auto& mode : c.study.modes) {
    for (const auto& row : mode_rows(mode)) names.insert(row.second);  // the sub-runs' rows
  }
  if (c.study.clusters > 0) {
    for (const auto& row : cluster_rows()) names.insert(row.first);
  }
  for (size_t i = 0; i < c.study.methods.size(); ++i) {
    const std::string& line = c.study.methods[i];
    const std::string where = fmt::format("study.methods[{}] \"{}\"", i, line);
    try {
      const auto words = split_words(line);
      BTX_CHECK(!words.empty(), "empty entry (expected \"METHOD [--param value ...]\")");
      const MergeMethod& m = find_merge_method(words[0]);
      // The rest is read with `btx merge`'s own declarations (--name and the parameters; the
      // study sets --run, --method and --resume itself) and the entry's finetuning options.
      StudyEntry entry;
      ArgsReader reader({words.begin() + 1, words.end()},
                        {"--name", "--finetune", "--finetune-steps", "--proxies"});
      entry.visit(reader);
      reader.finish();
      MergeRequest request = entry.merge.request;
      request.method = m.name;
      std::optional<std::string> finetune = entry.finetune;
      const std::optional<std::string>& finetune_steps = entry.finetune_steps;
      // Unknown parameters, choices and values out of range are errors.
      const auto resolved = resolve_merge_params(m, request.params);
      const RouterTraits* router = m.routed() ? &m.router(resolved) : nullptr;
      check_merge_expert_mode(m, c.experts.mode, "[experts] mode");
      if (finetune) {
        BTX_CHECK(m.routed(), "--finetune: the {} method makes no routed model to finetune",
                  m.name);
        if (*finetune == "none") {
          finetune = "";
        } else {
          param_selection(*finetune, finetune_selections(), "--finetune");
        }
      }
      StudyMethod s{m.name,         merge_output_name(request),
                    request.params, finetune.value_or(m.routed() ? m.study_finetune : ""),
                    m.trains,       analysis_kind(m.ensemble, router)};
      if (finetune_steps) {
        BTX_CHECK(!s.finetune.empty(),
                  "--finetune-steps: the {} model of this entry is not finetuned", s.method);
        const auto steps = parse_integer(*finetune_steps);
        BTX_CHECK(steps && *steps >= 1, "--finetune-steps '{}': expected an integer >= 1",
                  *finetune_steps);
        s.finetune_steps = *steps;
      }
      if (!entry.proxies.empty()) {
        BTX_CHECK(!s.finetune.empty(), "--proxies: the {} model of this entry is not finetuned",
                  s.method);
        std::set<std::string> known;
        if (c.study.build_corpus) {
          for (const auto& spec : corpus_domain_specs()) known.insert(spec.name);
        }
        if (fs::is_directory(proxy_pool_dir(c))) {
          for (const auto& d : list_corpus(proxy_pool_dir(c))) known.insert(d.name);
        }
        for (const auto& d : entry.proxies) {
          BTX_CHECK(
              known.count(d), "--proxies: unknown domain '{}' (the pool {} {}: {})", d,
              proxy_pool_dir(c).string(), c.study.build_corpus ? "is built from" : "holds",
              known.empty() ? std::string("nothing") : fmt::format("{}", fmt::join(known, ", ")));
          BTX_CHECK(std::find(c.corpus.domains.begin(), c.corpus.domains.end(), d) ==
                        c.corpus.domains.end(),
                    "--proxies: '{}' is a training domain; proxies stand in for the domains' "
                    "own text, so they come from other text",
                    d);
          BTX_CHECK(
              std::find(c.corpus.novel.begin(), c.corpus.novel.end(), d) == c.corpus.novel.end(),
              "--proxies: '{}' is a novel domain, kept for evaluation only", d);
        }
        s.proxies = entry.proxies;
      }
      BTX_CHECK(names.insert(s.name).second,
                "the name '{}' is used twice (give one of them --name NAME)", s.name);
      out.push_back(std::move(s));
    } catch (const Error& e) {
      fail("{}: {}", where, e.what());
    }
  }
  return out;
}

fs::path proxy_pool_dir(const RunConfig& c) {
  return fs::path(c.corpus.dir + "-pool");
}

void check_study_domains(const RunConfig& c) {
  std::set<std::string> known;
  if (fs::is_directory(c.corpus.dir)) {
    for (const auto& d : list_corpus(c.corpus.dir)) known.insert(d.name);
  }
  if (c.study.build_corpus) {
    for (const auto& s : corpus_domain_specs()) known.insert(s.name);
  }
  BTX_CHECK(!c.corpus.domains.empty(),
            "[corpus] domains is empty: the study needs its training domains named");
  for (const auto* list : {&c.corpus.domains, &c.corpus.novel}) {
    for (const auto& d : *list) {
      BTX_CHECK(known.count(d), "[corpus] {}: unknown domain '{}' (known: {})",
                list == &c.corpus.domains ? "domains" : "novel", d, fmt::join(known, ", "));
    }
  }
}

std::vector<std::string> study_models(const RunConfig& c) {
  std::vector<std::string> models = {"seed"};
  size_t after_ensembles = 1;
  for (const auto& m : study_methods(c)) {
    models.push_back("merged/" + m.name);
    if (m.method == "ensemble") after_ensembles = models.size();
  }
  if (c.study.random_split) {
    models.insert(models.begin() + static_cast<std::ptrdiff_t>(after_ensembles),
                  fmt::format("{}/merged/{}", kRandomSplit, kRandomSplit));
  }
  for (const auto& mode : c.study.modes) {
    for (const auto& row : mode_rows(mode)) {
      models.push_back(fmt::format("{}/merged/{}", mode_folder(mode), row.second));
    }
  }
  if (c.study.clusters > 0) {
    for (const auto& row : cluster_rows()) {
      models.push_back(fmt::format("{}/merged/{}", kClusters, row.first));
    }
  }
  return models;
}

const std::string& default_study_config() {
  static const std::string text =
#include "btx/default_config.inc"
      ;
  return text;
}

}  // namespace btx
