// The study's plan: the run's stages in order, each a list of ordinary btx commands with the
// stages it needs, its outputs and the config keys it reads (study.h).
#include <algorithm>
#include <limits>

#include "btx/analysis/analysis.h"
#include "btx/analysis/barrier.h"
#include "btx/analysis/report.h"
#include "btx/analysis/results.h"
#include "btx/corpus/corpus.h"
#include "btx/corpus/corpus_build.h"
#include "btx/merge/finetune.h"
#include "btx/merge/method.h"
#include "btx/merge/proxies.h"
#include "btx/model/param_roles.h"
#include "btx/run/experts.h"
#include "btx/run/launch.h"
#include "btx/study/study.h"
#include "btx/study/sub_runs.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

// A [study] methods entry that takes experts from the other-seed sub-run (symphony --from).
bool takes_other_seed(const StudyMethod& m) {
  const auto it = m.params.find("from");
  return it != m.params.end() && it->second == kOtherSeed;
}

// The study's loss barriers: every pair of experts and each with the seed, at 5 points along the
// path, on the first 8192 test tokens of each domain.
constexpr int64_t kStudyBarrierPoints = 5;
constexpr int64_t kStudyBarrierTokens = 8192;

// `btx merge` of `method` into run_dir/merged/<name>, from the command's declarations.
std::vector<std::string> merge_command(const std::string& run_dir, const std::string& method,
                                       const std::string& name,
                                       const std::map<std::string, std::string>& params = {},
                                       bool resume = false) {
  MergeArgs merge;
  merge.run = run_dir;
  merge.request.method = method;
  merge.request.output_name = name;
  merge.request.params = params;
  merge.request.resume = resume;
  return command_line("merge", merge);
}

// `btx finetune` of run_dir/merged/<name>, training `train` (finetune_selections()) for `steps`
// steps (0: [finetune] steps), on the run's data or on `data` (token shards) when given.
std::vector<std::string> finetune_command(const std::string& run_dir, const std::string& name,
                                          const std::string& train, int64_t steps = 0,
                                          const std::string& data = "") {
  FinetuneArgs f;
  f.run = run_dir;
  f.model = "merged/" + name;
  f.resume = true;
  f.train = train;
  f.steps = steps;
  f.data = data;
  return command_line("finetune", f);
}

// The folder of the run's proxies stage (MetaMoE).
constexpr const char* kProxies = "proxies";

// `btx eval` of `model` (as the run names it) into eval/<name>.json.
std::vector<std::string> eval_command(const std::string& run_dir, const std::string& model) {
  EvalArgs e;
  e.run = run_dir;
  e.models = {model};
  return command_line("eval", e);
}

// `btx analyze` of the run: `model`'s analysis, or with no model the experts' divergence.
std::vector<std::string> analyze_command(const std::string& run_dir, const std::string& model) {
  AnalyzeArgs a;
  a.run = run_dir;
  if (model.empty()) {
    a.divergence = true;
  } else {
    a.models = {model};
  }
  return command_line("analyze", a);
}

// The stage names among `names` that are not empty.
std::vector<std::string> needs(std::initializer_list<std::string> names) {
  std::vector<std::string> out;
  for (const auto& n : names) {
    if (!n.empty()) out.push_back(n);
  }
  return out;
}

// Whether the run's seed was made by `btx import` (its training state says where from).
bool imported_seed(const Run& run) {
  if (!fs::exists(run.seed())) return false;
  const auto state = load_train_state(run.seed());
  return state && state->extra.contains("imported_from");
}

// Builds the plan stage by stage, in the order they run; `evals` and `analyses` collect what
// the results table and the report read.
struct Planner {
  const Run& run;
  const RunConfig& c;
  const std::string R;  // the run folder, as the commands name it
  std::vector<Stage> stages;
  std::vector<std::string> evals = {"seed"}, analyses;

  explicit Planner(const Run& r) : run(r), c(r.config()), R(r.root.string()) {}

  // eval/<name>: the test perplexity of `model` (as the run names it), after stage `after`.
  void eval_stage(const std::string& name, const std::string& after, const std::string& model) {
    Stage s{"eval/" + name,           "test perplexity per domain",          {after},
            {eval_command(R, model)}, {fs::path("eval") / (name + ".json")}, {}};
    s.version = 1;  // 1: with each window's loss (the results' intervals)
    stages.push_back(std::move(s));
    evals.push_back("eval/" + name);
  }

  // The corpus (when the study builds it), the tokenizer and shards, and the seed.
  void data_and_seed() {
    std::vector<std::string> domains = c.corpus.domains;
    domains.insert(domains.end(), c.corpus.novel.begin(), c.corpus.novel.end());
    std::string corpus_stage;
    if (c.study.build_corpus) {
      Stage s{"corpus", "real multi-domain text from Debian packages", {}, {}, {}, {"corpus."}};
      CorpusBuildArgs build;
      build.options.out = c.corpus.dir;
      build.options.domains = domains;
      s.commands.push_back(command_line("corpus build", build));
      for (const auto& d : domains)
        s.outputs.push_back(fs::absolute(fs::path(c.corpus.dir) / (d + ".txt")));
      stages.push_back(std::move(s));
      corpus_stage = "corpus";
    }
    PrepareArgs prepare;
    prepare.run = R;
    SeedArgs seed_args;
    seed_args.prepare.run = R;
    seed_args.resume = true;
    // A seed `btx import` made is the run's starting point, with its tokenizer: no stage owns
    // them, so none removes or remakes them (the seed stage only evaluates it).
    const bool imported = imported_seed(run);
    stages.push_back({"data",
                      "tokenizer and token shards",
                      needs({corpus_stage}),
                      {command_line("prepare", prepare)},
                      imported ? std::vector<fs::path>{"data"}
                               : std::vector<fs::path>{"tokenizer.model", "data"},
                      {"corpus.", "tokenizer.", "data.", "random_seed"}});
    Stage seed{"seed",
               imported ? "the imported seed, evaluated" : "the dense seed on the balanced mixture",
               {"data"},
               {command_line("seed", seed_args)},
               imported ? std::vector<fs::path>{"eval/seed.json"}
                        : std::vector<fs::path>{"seed", "eval/seed.json"},
               {"model.", "seed.", "random_seed"}};
    seed.progress.push_back(
        {"seed", "seed/metrics.jsonl", c.seed_train.steps, c.seed_train.tokens_per_step()});
    stages.push_back(std::move(seed));
  }

  // Branching and training the experts of `run_dir`: a local pool of processes, or Slurm.
  std::vector<std::vector<std::string>> expert_commands(const std::string& run_dir) const {
    BranchArgs branch;
    branch.run = run_dir;
    LaunchArgs launch;
    launch.run = run_dir;
    if (c.study.launcher == "slurm") {
      launch.use_slurm = launch.launch.submit = launch.launch.wait = true;
    } else {
      launch.local.jobs = static_cast<int>(c.study.jobs);
    }
    return {command_line("branch", branch), command_line("launch", launch)};
  }

  // One progress line per expert that `sc` trains in `folder` (the run itself when empty), each
  // labelled "<label> <expert>".
  void expert_progress(Stage& s, const std::string& label, const fs::path& folder,
                       const RunConfig& sc) const {
    const auto& et = sc.experts.train;
    for (const auto& e : resolve_experts(sc, sc.corpus.domains)) {
      s.progress.push_back({label + " " + e.name, folder / "experts" / e.name / "metrics.jsonl",
                            et.steps, et.tokens_per_step()});
    }
  }

  // The experts: branched from the seed, each trained alone.
  void experts() {
    Stage s{"experts",   "one expert per domain, each trained alone from the seed",
            {"seed"},    expert_commands(R),
            {"experts"}, {"experts.", "random_seed"}};
    s.exclusive = true;
    expert_progress(s, "expert", "", c);
    stages.push_back(std::move(s));
    // Why merging loses what the experts learned (dense experts only: the others' shapes differ
    // from the seed's): how far they moved, and the loss along the straight paths between them.
    if (dense_experts(c.experts.mode)) {
      stages.push_back({"analysis/divergence",
                        "how far the experts moved from the seed and from one another",
                        {"experts"},
                        {analyze_command(R, "")},
                        {fs::path("analysis") / "divergence.json"},
                        {}});
      BarrierArgs barrier;
      barrier.run = R;
      barrier.pairs = true;
      barrier.opts.points = kStudyBarrierPoints;
      barrier.opts.max_tokens = kStudyBarrierTokens;
      stages.push_back({"analysis/barriers",
                        "test loss along the straight path between experts, and from the seed",
                        {"experts"},
                        {command_line("barrier", barrier)},
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
    if (takes_other_seed(m)) s.after.push_back(kOtherSeed);
    s.commands.push_back(merge_command(R, m.method, m.name, m.params, m.trains));
    if (m.trains) {
      s.config_keys.push_back("finetune.");  // its budget may be matched to finetuning's
      s.progress.push_back({m.name, fs::path("merged") / m.name / "metrics.jsonl", 0, 0});
    }
    if (!m.proxies.empty()) s.after.push_back(kProxies);
    if (!m.finetune.empty()) {
      const std::string data = m.proxies.empty() ? "" : (run.root / kProxies / "data").string();
      s.commands.push_back(finetune_command(R, m.name, m.finetune, m.finetune_steps, data));
      s.config_keys.push_back("finetune.");
      s.progress.push_back({"finetune " + m.name, fs::path("merged") / m.name / "metrics.jsonl",
                            m.finetune_steps > 0 ? m.finetune_steps : ft.steps,
                            ft.tokens_per_step()});
    }
    stages.push_back(std::move(s));
    const std::string model = "merged/" + m.name;
    eval_stage(m.name, "merge/" + m.name, model);
    // Routed models and ensembles are analysed for the report (analysis_kind()).
    if (m.analysis != AnalysisKind::kNone) {
      Stage a{"analysis/" + m.name,
              m.analysis == AnalysisKind::kRouting
                  ? "routing per layer and token, gains per token by the seed's entropy"
                  : "posterior along sequences, gains per token by the seed's entropy",
              {"merge/" + m.name},
              {analyze_command(R, model)},
              {fs::path("analysis") / (m.name + ".json")},
              {}};
      a.version = 2;  // 2: with token_gain
      stages.push_back(std::move(a));
      analyses.push_back("analysis/" + m.name);
    }
  }

  // MetaMoE's proxies, for the entries that finetune on them (--proxies): the pool corpus (built
  // from Debian packages when the study builds its corpus), then each expert's proxies from it.
  void proxies(const std::vector<std::string>& domains) {
    const fs::path pool = proxy_pool_dir(c);
    Stage s{kProxies,
            fmt::format("MetaMoE: each expert's proxies from a public pool ({}), for routers "
                        "trained without the domains' text",
                        fmt::join(domains, ", ")),
            {"experts"},
            {},
            {kProxies},
            {"corpus.", "tokenizer.", "data.", "random_seed"}};
    if (c.study.build_corpus) {
      CorpusBuildArgs build;
      build.options.out = pool.string();
      build.options.domains = domains;
      s.commands.push_back(command_line("corpus build", build));
      for (const auto& d : domains) s.outputs.push_back(fs::absolute(pool / (d + ".txt")));
    }
    ProxiesArgs p;
    p.run = R;
    p.options.pool = pool;
    p.options.domains = domains;
    p.options.out = run.root / kProxies;
    p.options.seed = c.seed;
    s.commands.push_back(command_line("proxies", p));
    stages.push_back(std::move(s));
  }

  // BTM's random-split baseline: a sub-run sharing the seed, its experts ensembled.
  void random_split() {
    const std::string sub = random_split_dir(run).string();
    Stage s{kRandomSplit,
            "BTM's baseline: experts on random equal shares, ensembled",
            {"seed"},
            expert_commands(sub),
            {fs::path(kRandomSplit) / "config.toml", fs::path(kRandomSplit) / "experts",
             fs::path(kRandomSplit) / "merged"},
            {"experts.", "random_seed"}};
    s.commands.push_back(merge_command(sub, "ensemble", kRandomSplit));
    expert_progress(s, kRandomSplit, kRandomSplit, random_split_config(c));
    s.prepare = [run = run, c = c] { prepare_sub_run(run, kRandomSplit, random_split_config(c)); };
    s.exclusive = true;
    stages.push_back(std::move(s));
    eval_stage(kRandomSplit, kRandomSplit, fmt::format("{}/merged/{}", kRandomSplit, kRandomSplit));
  }

  // Experts of another seed, for the entries that take experts --from it (symphony): a sub-run
  // sharing the data and tokenizer, with a seed of its own trained from random_seed + 1, and
  // its experts.
  void other_seed_sub_run() {
    BTX_CHECK(!imported_seed(run),
              "[study] methods: --from {}: the run's seed was imported, so the study cannot train "
              "another like it; name checkpoints of another seed with --take NAME=DIR",
              kOtherSeed);
    const std::string sub = (run.root / kOtherSeed).string();
    const RunConfig sc = other_seed_config(c);
    SeedArgs seed_args;
    seed_args.prepare.run = sub;
    seed_args.resume = true;
    Stage s{kOtherSeed,
            "a second seed trained from another random seed, and its experts (experts that do "
            "not share the seed)",
            {"data"},
            {command_line("seed", seed_args)},
            {fs::path(kOtherSeed) / "config.toml", fs::path(kOtherSeed) / "seed",
             fs::path(kOtherSeed) / "experts"},
            {"model.", "seed.", "experts.", "random_seed"}};
    for (auto& command : expert_commands(sub)) s.commands.push_back(std::move(command));
    s.progress.push_back({"other seed", fs::path(kOtherSeed) / "seed" / "metrics.jsonl",
                          c.seed_train.steps, c.seed_train.tokens_per_step()});
    expert_progress(s, "other seed", kOtherSeed, sc);
    s.prepare = [run = run, sc] { prepare_sub_run(run, kOtherSeed, sc, {"seed"}); };
    s.exclusive = true;
    stages.push_back(std::move(s));
  }

  // c-BTM's discovered domains ([study] clusters): the training text clustered by the seed's
  // hidden states, a sub-run sharing the seed and tokenizer whose experts train one per
  // cluster, ensembled with the cached prior and with cluster routing, evaluated here.
  void clusters_sub_run() {
    const std::string folder = kClusters;
    const std::string sub = (run.root / folder).string();
    const RunConfig sc = clusters_config(c, run);
    std::vector<std::string> cluster = {"cluster",
                                        "--corpus",
                                        c.corpus.dir,
                                        "--domains",
                                        fmt::format("{}", fmt::join(c.corpus.domains, ",")),
                                        "--k",
                                        std::to_string(c.study.clusters),
                                        "--embed",
                                        "seed",
                                        "--run",
                                        R,
                                        "--seed",
                                        std::to_string(c.seed),
                                        "--chunk-bytes",
                                        std::to_string(c.data.chunk_bytes),
                                        "--out",
                                        sc.corpus.dir};
    PrepareArgs prepare;
    prepare.run = sub;
    Stage s{folder,
            fmt::format("c-BTM: the training text in {} clusters of the seed's hidden states, one "
                        "expert each, ensembled by the cached prior and by cluster routing",
                        c.study.clusters),
            {"seed"},
            {cluster, command_line("prepare", prepare)},
            {fs::path(folder) / "config.toml", fs::path(folder) / "corpus",
             fs::path(folder) / "data", fs::path(folder) / "experts", fs::path(folder) / "merged"},
            {"corpus.", "data.", "experts.", "random_seed", "model.", "seed."}};
    for (auto& command : expert_commands(sub)) s.commands.push_back(std::move(command));
    expert_progress(s, "cluster expert", folder, sc);
    for (const auto& [name, params] : cluster_rows()) {
      s.commands.push_back(merge_command(sub, "ensemble", name, params));
    }
    s.prepare = [run = run, sc] { prepare_sub_run(run, kClusters, sc, {"data"}); };
    s.exclusive = true;
    stages.push_back(std::move(s));
    for (const auto& [name, params] : cluster_rows()) {
      eval_stage(name, folder, fmt::format("{}/merged/{}", folder, name));
    }
  }

  // Experts trained in another mode ([study] modes): a sub-run sharing the seed, its experts'
  // ensemble and average, and its one-model merge (finetuned as the method says).
  void mode_sub_run(ExpertMode mode) {
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
    expert_progress(s, folder, folder, sc);
    for (const auto& [method, name] : rows) {
      s.commands.push_back(merge_command(sub, method, name));
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
      eval_stage(row.second, folder, fmt::format("{}/merged/{}", folder, row.second));
    }
  }

  // The results table after every evaluation; the report after it and every analysis.
  void results_and_report() {
    ResultsArgs results;
    results.run = R;
    results.models = study_models(c);
    // Its findings read the analyses too.
    std::vector<std::string> inputs = evals;
    inputs.insert(inputs.end(), analyses.begin(), analyses.end());
    stages.push_back({"results",
                      "the results table (results.md, results.json)",
                      inputs,
                      {command_line("results", results)},
                      {"results.json", "results.md"},
                      {}});
    if (c.study.report) {
      ReportArgs report;
      report.run = R;
      std::vector<std::string> after = {"results"};
      after.insert(after.end(), analyses.begin(), analyses.end());
      stages.push_back({"report",
                        "report.html: table, curves, heatmaps, token views",
                        after,
                        {command_line("report", report)},
                        {"report.html"},
                        {}});
    }
  }
};

}  // namespace

std::vector<Stage> plan_study(const Run& run) {
  const RunConfig& c = run.config();
  check_study_domains(c);
  const auto methods = study_methods(c);
  Planner p(run);
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
  if (std::any_of(methods.begin(), methods.end(), takes_other_seed)) p.other_seed_sub_run();
  std::vector<std::string> pool;  // the proxies' pool domains: one for every entry
  for (const auto& m : methods) {
    if (m.proxies.empty()) continue;
    BTX_CHECK(pool.empty() || pool == m.proxies,
              "[study] methods: --proxies {} and --proxies {}: the study picks one set of "
              "proxies, so every entry names the same pool domains",
              fmt::join(pool, ","), fmt::join(m.proxies, ","));
    pool = m.proxies;
  }
  if (!pool.empty()) p.proxies(pool);
  for (const auto& m : order) p.combination(m);
  if (c.study.random_split) p.random_split();
  for (const auto& mode : c.study.modes) p.mode_sub_run(mode);
  if (c.study.clusters > 0) p.clusters_sub_run();
  p.results_and_report();
  return std::move(p.stages);
}

}  // namespace btx
