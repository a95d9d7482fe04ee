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
  for (size_t i = 0; i < c.study.methods.size(); ++i) {
    const std::string& line = c.study.methods[i];
    const std::string where = fmt::format("study.methods[{}] \"{}\"", i, line);
    try {
      const auto words = split_words(line);
      BTX_CHECK(!words.empty(), "empty entry (expected \"METHOD [--param value ...]\")");
      const MergeMethod& m = find_merge_method(words[0]);
      MergeRequest request;
      request.method = m.name;
      std::optional<std::string> finetune;        // the entry's --finetune (not a merge parameter)
      std::optional<std::string> finetune_steps;  // its --finetune-steps (neither)
      for (size_t w = 1; w < words.size(); w += 2) {
        BTX_CHECK(words[w].rfind("--", 0) == 0 && words[w].size() > 2,
                  "expected --PARAM VALUE pairs after the method, got '{}'", words[w]);
        BTX_CHECK(w + 1 < words.size(), "{} has no value", words[w]);
        const std::string key = words[w].substr(2);
        if (key == "name") {
          request.output_name = words[w + 1];
        } else if (key == "finetune") {
          BTX_CHECK(!finetune, "--finetune given twice");
          finetune = words[w + 1];
        } else if (key == "finetune-steps") {
          BTX_CHECK(!finetune_steps, "--finetune-steps given twice");
          finetune_steps = words[w + 1];
        } else {
          BTX_CHECK(!request.params.count(key), "{} given twice", words[w]);
          request.params[key] = words[w + 1];
        }
      }
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
      BTX_CHECK(names.insert(s.name).second,
                "the name '{}' is used twice (give one of them --name NAME)", s.name);
      out.push_back(std::move(s));
    } catch (const Error& e) {
      fail("{}: {}", where, e.what());
    }
  }
  return out;
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
  return models;
}

const std::string& default_study_config() {
  static const std::string text =
#include "btx/default_config.inc"
      ;
  return text;
}

}  // namespace btx
