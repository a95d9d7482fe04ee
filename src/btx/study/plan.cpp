// The study's plan: [study] parsed and checked against the merge registry, and the run's stages
// in order, each a list of ordinary btx commands with the stages it needs, its outputs and the
// config keys it reads (study.h).
#include <algorithm>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

#include "btx/corpus/corpus.h"
#include "btx/corpus/corpus_build.h"
#include "btx/merge/finetune.h"
#include "btx/merge/method.h"
#include "btx/model/param_roles.h"
#include "btx/run/experts.h"
#include "btx/study/study.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

constexpr const char* kRandomSplit = "random-split";  // sub-run folder, merge and row name
// The study's loss barriers: every pair of experts and each with the seed, at 5 points along the
// path, on the first 8192 test tokens of each domain.
constexpr int64_t kStudyBarrierPoints = 5;
constexpr int64_t kStudyBarrierTokens = 8192;

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// The run folder of the random-split experts: a run of its own whose tokenizer, data and seed
// are links to the parent's, so only its experts differ.
fs::path random_split_dir(const RunDir& run) {
  return run.root / kRandomSplit;
}

// A sub-run's config: the parent's, with no study of its own.
RunConfig sub_run_config(const RunConfig& c, const std::string& suffix) {
  RunConfig r = c;
  r.name = c.name + "-" + suffix;
  r.study.methods.clear();
  r.study.random_split = false;
  r.study.modes.clear();
  return r;
}

RunConfig random_split_config(const RunConfig& c) {
  RunConfig r = sub_run_config(c, kRandomSplit);
  r.experts.split = "random";
  r.experts.count = static_cast<int>(c.corpus.domains.size());
  r.experts.custom.clear();
  return r;
}

// A sub-run in run/<folder> with config `sub`, its tokenizer, data and seed linked to the
// parent's.
void prepare_sub_run(const RunDir& run, const std::string& folder, const RunConfig& sub) {
  const RunDir s{run.root / folder};
  init_run(s, sub, /*force=*/true);
  for (const char* item : {"tokenizer.model", "data", "seed"}) {
    const fs::path link = s.root / item;
    if (fs::is_symlink(link) || fs::exists(link)) continue;
    fs::create_symlink(fs::path("..") / item, link);
  }
}

// ---- expert-mode sub-runs ([study] modes) ----

std::string mode_folder(ExpertMode mode) {
  return std::string("experts-") + name_of(mode);
}

RunConfig mode_config(const RunConfig& c, ExpertMode mode) {
  RunConfig r = sub_run_config(c, mode_folder(mode));
  r.experts.mode = mode;
  return r;
}

// A mode sub-run's rows: (method, merged name), its one-model merge last.
std::vector<std::pair<std::string, std::string>> mode_rows(ExpertMode mode) {
  const std::string name = name_of(mode);
  if (!dense_experts(mode))
    return {{"ensemble", name + "-ensemble"},
            {"average", name + "-average"},
            {name, name}};  // flexolmo's own merge
  return {{"ensemble", name + "-ensemble"}, {"average", name + "-average"}, {"btx", name + "-btx"}};
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

// ---- the plan -------------------------------------------------------------------------------

namespace {

// `btx finetune` of run_dir/merged/<name>, training `train` (finetune_selections()) for `steps`
// steps (0: [finetune] steps).
std::vector<std::string> finetune_command(const std::string& run_dir, const std::string& name,
                                          const std::string& train, int64_t steps = 0) {
  std::vector<std::string> cmd = {"finetune", "--run",          run_dir,
                                  "--model",  "merged/" + name, "--resume"};
  if (train != "all") {
    cmd.push_back("--train");
    cmd.push_back(train);
  }
  if (steps > 0) {
    cmd.push_back("--steps");
    cmd.push_back(std::to_string(steps));
  }
  return cmd;
}

// The stage names among `names` that are not empty.
std::vector<std::string> needs(std::initializer_list<std::string> names) {
  std::vector<std::string> out;
  for (const auto& n : names) {
    if (!n.empty()) out.push_back(n);
  }
  return out;
}

// Builds the plan stage by stage, in the order they run; `evals` and `analyses` collect what
// the results table and the report read.
struct Planner {
  const RunDir& run;
  const RunConfig& c;
  const std::string R;  // the run folder, as the commands name it
  std::vector<Stage> stages;
  std::vector<std::string> evals = {"seed"}, analyses;

  Planner(const RunDir& r, const RunConfig& config) : run(r), c(config), R(r.root.string()) {}

  // The corpus (when the study builds it), the tokenizer and shards, and the seed.
  void data_and_seed() {
    std::vector<std::string> domains = c.corpus.domains;
    domains.insert(domains.end(), c.corpus.novel.begin(), c.corpus.novel.end());
    std::string corpus_stage;
    if (c.study.build_corpus) {
      Stage s{"corpus", "real multi-domain text from Debian packages", {}, {}, {}, {"corpus."}};
      s.commands.push_back({"corpus", "build", "--out", c.corpus.dir, "--domains",
                            fmt::format("{}", fmt::join(domains, ","))});
      for (const auto& d : domains)
        s.outputs.push_back(fs::absolute(fs::path(c.corpus.dir) / (d + ".txt")));
      stages.push_back(std::move(s));
      corpus_stage = "corpus";
    }
    stages.push_back({"data",
                      "tokenizer and token shards",
                      needs({corpus_stage}),
                      {{"prepare", "--run", R}},
                      {"tokenizer.model", "data"},
                      {"corpus.", "tokenizer.", "data.", "random_seed"}});
    Stage seed{"seed",
               "the dense seed on the balanced mixture",
               {"data"},
               {{"seed", "--run", R, "--resume"}},
               {"seed", "eval/seed.json"},
               {"model.", "seed.", "random_seed"}};
    seed.progress.push_back(
        {"seed", "seed/metrics.jsonl", c.seed_train.steps, c.seed_train.tokens_per_step()});
    stages.push_back(std::move(seed));
  }

  // Branching and training the experts of `run_dir`: a local pool of processes, or Slurm.
  std::vector<std::vector<std::string>> expert_commands(const std::string& run_dir) const {
    std::vector<std::vector<std::string>> cmds = {{"branch", "--run", run_dir}};
    if (c.study.launcher == "slurm") {
      cmds.push_back({"launch", "--run", run_dir, "--slurm", "--submit", "--wait"});
    } else {
      cmds.push_back({"launch", "--run", run_dir, "--jobs", std::to_string(c.study.jobs)});
    }
    return cmds;
  }

  // The experts: branched from the seed, each trained alone.
  void experts() {
    const auto& et = c.experts.train;
    Stage s{"experts",   "one expert per domain, each trained alone from the seed",
            {"seed"},    expert_commands(R),
            {"experts"}, {"experts.", "random_seed"}};
    s.exclusive = true;
    for (const auto& e : resolve_experts(c, c.corpus.domains)) {
      s.progress.push_back({"expert " + e.name, fs::path("experts") / e.name / "metrics.jsonl",
                            et.steps, et.tokens_per_step()});
    }
    stages.push_back(std::move(s));
    // Why merging loses what the experts learned (dense experts only: the others' shapes differ
    // from the seed's): how far they moved, and the loss along the straight paths between them.
    if (dense_experts(c.experts.mode)) {
      stages.push_back({"analysis/divergence",
                        "how far the experts moved from the seed and from one another",
                        {"experts"},
                        {{"analyze", "--run", R, "--divergence"}},
                        {fs::path("analysis") / "divergence.json"},
                        {}});
      stages.push_back(
          {"analysis/barriers",
           "test loss along the straight path between experts, and from the seed",
           {"experts"},
           {{"barrier", "--run", R, "--pairs", "--points", std::to_string(kStudyBarrierPoints),
             "--tokens", std::to_string(kStudyBarrierTokens)}},
           {fs::path("analysis") / "barriers.json"},
           {}});
      analyses.push_back("analysis/divergence");
      analyses.push_back("analysis/barriers");
    }
  }

  // One combination: merge (+ finetuning of routed models), evaluation, analysis.
  void combination(const StudyMethod& m) {
    const auto& ft = c.finetune;
    Stage s{"merge/" + m.name,
            m.finetune.empty()    ? m.method
            : m.finetune == "all" ? m.method + ", then finetuned on the mixture"
                                  : fmt::format("{}, then finetuned on the mixture (--train {})",
                                                m.method, m.finetune),
            {"experts"},
            {},
            {fs::path("merged") / m.name},
            {}};
    std::vector<std::string> merge = {"merge", "--run", R, "--method", m.method, "--name", m.name};
    for (const auto& [k, v] : m.params) {
      merge.push_back("--" + k);
      merge.push_back(v);
    }
    if (m.trains) {
      merge.push_back("--resume");
      s.config_keys.push_back("finetune.");  // its budget may be matched to finetuning's
      s.progress.push_back({m.name, fs::path("merged") / m.name / "metrics.jsonl", 0, 0});
    }
    s.commands.push_back(merge);
    if (!m.finetune.empty()) {
      s.commands.push_back(finetune_command(R, m.name, m.finetune, m.finetune_steps));
      s.config_keys.push_back("finetune.");
      s.progress.push_back({"finetune " + m.name, fs::path("merged") / m.name / "metrics.jsonl",
                            m.finetune_steps > 0 ? m.finetune_steps : ft.steps,
                            ft.tokens_per_step()});
    }
    stages.push_back(std::move(s));
    const std::string model = "merged/" + m.name;
    stages.push_back({"eval/" + m.name,
                      "test perplexity per domain",
                      {"merge/" + m.name},
                      {{"eval", "--run", R, "--model", model}},
                      {fs::path("eval") / (m.name + ".json")},
                      {}});
    evals.push_back("eval/" + m.name);
    // Routed models and ensembles are analysed for the report (analysis_kind()).
    if (m.analysis != AnalysisKind::kNone) {
      Stage a{"analysis/" + m.name,
              m.analysis == AnalysisKind::kRouting
                  ? "routing per layer and token, gains per token by the seed's entropy"
                  : "posterior along sequences, gains per token by the seed's entropy",
              {"merge/" + m.name},
              {{"analyze", "--run", R, "--model", model}},
              {fs::path("analysis") / (m.name + ".json")},
              {}};
      a.version = 2;  // 2: with token_gain
      stages.push_back(std::move(a));
      analyses.push_back("analysis/" + m.name);
    }
  }

  // BTM's random-split baseline: a sub-run sharing the seed, its experts ensembled.
  void random_split() {
    const auto& et = c.experts.train;
    const std::string sub = random_split_dir(run).string();
    Stage s{kRandomSplit,
            "BTM's baseline: experts on random equal shares, ensembled",
            {"seed"},
            expert_commands(sub),
            {fs::path(kRandomSplit) / "config.toml", fs::path(kRandomSplit) / "experts",
             fs::path(kRandomSplit) / "merged"},
            {"experts.", "random_seed"}};
    s.commands.push_back({"merge", "--run", sub, "--method", "ensemble", "--name", kRandomSplit});
    for (const auto& e : resolve_experts(random_split_config(c), c.corpus.domains)) {
      s.progress.push_back({"random-split " + e.name,
                            fs::path(kRandomSplit) / "experts" / e.name / "metrics.jsonl", et.steps,
                            et.tokens_per_step()});
    }
    s.prepare = [run = run, c = c] { prepare_sub_run(run, kRandomSplit, random_split_config(c)); };
    s.exclusive = true;
    stages.push_back(std::move(s));
    stages.push_back(
        {std::string("eval/") + kRandomSplit,
         "test perplexity per domain",
         {kRandomSplit},
         {{"eval", "--run", R, "--model", fmt::format("{}/merged/{}", kRandomSplit, kRandomSplit)}},
         {fs::path("eval") / (std::string(kRandomSplit) + ".json")},
         {}});
    evals.push_back(std::string("eval/") + kRandomSplit);
  }

  // Experts trained in another mode ([study] modes): a sub-run sharing the seed, its experts'
  // ensemble and average, and its one-model merge (finetuned as the method says).
  void mode_sub_run(ExpertMode mode) {
    const auto& et = c.experts.train;
    const auto& ft = c.finetune;
    const std::string folder = mode_folder(mode);
    const std::string sub = (run.root / folder).string();
    const RunConfig sc = mode_config(c, mode);
    const auto rows = mode_rows(mode);
    Stage s{folder,
            fmt::format("experts trained in mode {} (a sub-run sharing the seed): their "
                        "ensemble, average and {}",
                        name_of(mode), rows.back().first),
            {"seed"},
            expert_commands(sub),
            {fs::path(folder) / "config.toml", fs::path(folder) / "experts",
             fs::path(folder) / "merged"},
            {"experts.", "random_seed", "finetune."}};
    for (const auto& e : resolve_experts(sc, c.corpus.domains)) {
      s.progress.push_back({folder + " " + e.name,
                            fs::path(folder) / "experts" / e.name / "metrics.jsonl", et.steps,
                            et.tokens_per_step()});
    }
    for (const auto& [method, name] : rows) {
      s.commands.push_back({"merge", "--run", sub, "--method", method, "--name", name});
      const MergeMethod& m = find_merge_method(method);
      if (!m.routed() || m.study_finetune.empty()) continue;
      s.commands.push_back(finetune_command(sub, name, m.study_finetune));
      s.progress.push_back({"finetune " + name,
                            fs::path(folder) / "merged" / name / "metrics.jsonl", ft.steps,
                            ft.tokens_per_step()});
    }
    s.prepare = [run = run, folder, sc] { prepare_sub_run(run, folder, sc); };
    s.exclusive = true;
    stages.push_back(std::move(s));
    for (const auto& row : rows) {
      const std::string model = fmt::format("{}/merged/{}", folder, row.second);
      stages.push_back({"eval/" + row.second,
                        "test perplexity per domain",
                        {folder},
                        {{"eval", "--run", R, "--model", model}},
                        {fs::path("eval") / (row.second + ".json")},
                        {}});
      evals.push_back("eval/" + row.second);
    }
  }

  // The results table after every evaluation; the report after it and every analysis.
  void results_and_report() {
    std::vector<std::string> results_cmd = {"results", "--run", R, "--model",
                                            fmt::format("{}", fmt::join(study_models(c), ","))};
    // Its findings read the analyses too.
    std::vector<std::string> inputs = evals;
    inputs.insert(inputs.end(), analyses.begin(), analyses.end());
    stages.push_back({"results",
                      "the results table (results.md, results.json)",
                      inputs,
                      {results_cmd},
                      {"results.json", "results.md"},
                      {}});
    if (c.study.report) {
      std::vector<std::string> after = {"results"};
      after.insert(after.end(), analyses.begin(), analyses.end());
      stages.push_back({"report",
                        "report.html: table, curves, heatmaps, token views",
                        after,
                        {{"report", "--run", R}},
                        {"report.html"},
                        {}});
    }
  }
};

}  // namespace

std::vector<Stage> plan_study(const RunDir& run, const RunConfig& c) {
  check_study_domains(c);
  const auto methods = study_methods(c);
  Planner p(run, c);
  p.data_and_seed();
  p.experts();
  // Longest first: the merges that train (the dense baselines), then the routed ones by their
  // finetuning steps, then the rest, each group in the config's order. The runner starts ready
  // stages in plan order, so a long stage starts as soon as the experts are done and the short
  // ones fill the other slots beside it instead of leaving it alone at the end. (The results
  // table keeps the config's order: study_models().)
  auto work = [&](const StudyMethod& m) -> int64_t {
    if (m.trains) return std::numeric_limits<int64_t>::max();
    if (m.finetune.empty()) return 0;
    return m.finetune_steps > 0 ? m.finetune_steps : c.finetune.steps;
  };
  auto order = methods;
  std::stable_sort(order.begin(), order.end(),
                   [&](const StudyMethod& a, const StudyMethod& b) { return work(a) > work(b); });
  for (const auto& m : order) p.combination(m);
  if (c.study.random_split) p.random_split();
  for (const auto& mode : c.study.modes) p.mode_sub_run(mode);
  p.results_and_report();
  return std::move(p.stages);
}

const std::string& default_study_config() {
  static const std::string text =
#include "btx/default_config.inc"
      ;
  return text;
}

}  // namespace btx
