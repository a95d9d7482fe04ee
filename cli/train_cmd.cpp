// `btx prepare` and `btx seed`: the run's first stages (tokenizer, token shards, the dense seed);
// `btx finetune`: MoE finetuning of a merged model.
#include <spdlog/spdlog.h>

#include <iostream>
#include <optional>

#include "btx/merge/finetune.h"
#include "btx/run/run_dir.h"
#include "btx/train/checkpoint.h"
#include "btx/train/distributed.h"
#include "cli/commands.h"

namespace btx::cli {

namespace {
// With --force, a run made with another config adopts `c`; what the changed keys invalidate is
// removed first, so it is made again: the tokenizer and data when [corpus], [tokenizer] or [data]
// changed, the seed when those or [model] or [seed] did (experts branched from an old seed are
// refused by merge, which checks the seed's digest).
void drop_invalidated(const Run& run) {
  const RunConfig& c = run.config();
  if (!fs::exists(run.config_file())) return;
  const auto keys = differing_keys(load_run(run), c);
  auto changed = [&](std::initializer_list<const char*> sections) {
    return std::any_of(keys.begin(), keys.end(), [&](const std::string& k) {
      return std::any_of(sections.begin(), sections.end(),
                         [&](const char* s) { return k.rfind(std::string(s) + ".", 0) == 0; });
    });
  };
  auto drop = [](const fs::path& p) {
    if (fs::exists(p)) {
      spdlog::warn("--force: removing {} (the new config changes its inputs)", p.string());
      fs::remove_all(p);
    }
  };
  if (changed({"corpus", "tokenizer"})) drop(run.tokenizer_file());
  if (changed({"corpus", "tokenizer", "data"})) drop(run.data());
  if (changed({"corpus", "tokenizer", "data", "model", "seed"})) drop(run.seed());
}

Run open_run(const PrepareArgs& a) {
  const RunDir dir{a.run};
  const Run run(dir, a.config.empty() ? load_run(dir) : load_run_config(a.config));
  if (a.force) drop_invalidated(run);
  init_run(run, a.force);
  return run;
}
}  // namespace

std::vector<Command> add_train_commands(CLI::App& app) {
  auto args = std::make_shared<SeedArgs>();  // prepare takes its PrepareArgs
  std::vector<Command> out;

  auto* prepare = app.add_subcommand(
      "prepare", "Write the run's config, train its tokenizer and tokenize its data shards");
  CliArgs prepare_options(prepare);
  args->prepare.visit(prepare_options);
  prepare_options["--run"]->required();
  out.push_back({prepare, [args] {
                   const Run run = open_run(args->prepare);
                   ensure_tokenizer(run);
                   ensure_data(run);
                   spdlog::info("prepared {}", run.root.string());
                 }});

  auto* seed = app.add_subcommand(
      "seed", "Train the dense seed model on the domain-balanced mixture (prepares the run first)");
  CliArgs seed_options(seed);
  args->visit(seed_options);
  seed_options["--run"]->required();
  out.push_back({seed, [args] {
                   // Data parallel when started as several processes (WORLD_SIZE > 1, see
                   // distributed.h): rank 0 prepares the shared run folder while the others wait,
                   // then all train.
                   const DistributedContext& dist = distributed_from_env();
                   std::optional<Run> opened;
                   if (dist.is_main()) {
                     opened = open_run(args->prepare);
                     ensure_tokenizer(*opened);
                     ensure_data(*opened);
                   }
                   dist.barrier();
                   if (!dist.is_main()) opened = open_run(args->prepare);
                   const Run& run = *opened;
                   const RunConfig& c = run.config();
                   if (!train_seed(run, args->resume, args->stop_after).finished) return;
                   if (!dist.is_main()) return;
                   ModelScorer scorer(load_model(run.seed()));
                   const auto novel = run_novel_domains(c);
                   for (const char* split : {"valid", "test"}) {
                     std::cout << format_eval_table(
                         evaluate_in_run(run, scorer, "seed", novel, run_eval_options(c, split)));
                   }
                   spdlog::info("seed done: {} (test results in {})", run.seed().string(),
                                run.eval("seed").string());
                 }});

  auto f = std::make_shared<FinetuneArgs>();
  auto* finetune = app.add_subcommand(
      "finetune",
      "Finetune a merged MoE model (btx, upcycle) in place on the domain mixture ([finetune])");
  CliArgs options(finetune);  // no dynamic options: not needed after parsing
  f->visit(options);
  options["--run"]->required();
  options["--model"]->required();
  options["--train"]->check(CLI::IsMember(finetune_selections()))->capture_default_str();
  options["--steps"]->check(CLI::PositiveNumber);
  out.push_back({finetune, [f] {
                   const RunDir dir{f->run};
                   RunConfig c = load_run(dir);
                   if (f->steps > 0) c.finetune.steps = f->steps;
                   const Run run(dir, c);
                   finetune_model(run, resolve_model_path(run, f->model), f->train, f->resume,
                                  f->stop_after, f->data);
                 }});
  return out;
}

}  // namespace btx::cli
