// `btx run`: the whole study (study/study.h), from a config file or the embedded tiny preset.
// `btx sweep`: the study once per value of a config key (study/sweep.h).
#include <iostream>

#include "btx/study/study.h"
#include "btx/study/sweep.h"
#include "btx/util/error.h"
#include "cli/commands.h"

namespace btx::cli {

std::vector<Command> add_run_commands(CLI::App& app) {
  struct RunArgs {
    std::string config, run;
    bool force = false, dry_run = false, print_config = false;
  };
  auto a = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand(
      "run",
      "Run the whole study: corpus, tokenizer, seed, experts, every combination method of "
      "[study], evaluation, routing analysis, results table and report. Finished stages are "
      "skipped (checksummed), an interrupted one continues");
  cmd->add_option("config", a->config,
                  "Run config (TOML; see configs/). Default: the run folder's own config.toml, "
                  "else the tiny preset");
  cmd->add_option("--run", a->run, "Run directory (default: runs/<config name>)");
  cmd->add_flag("--force", a->force,
                "Adopt a config that differs from the run folder's (stages whose inputs "
                "changed run again)");
  cmd->add_flag("--dry-run", a->dry_run, "Print every stage, whether it is done and its commands");
  cmd->add_flag("--print-config", a->print_config,
                "Print the default config (the tiny preset) to copy and edit");
  struct SweepArgs {
    std::string config, run;
    std::vector<std::string> set;
    bool dry_run = false;
  };
  auto w = std::make_shared<SweepArgs>();
  auto* sweep = app.add_subcommand(
      "sweep",
      "Run the study once per value of one or more config keys, sharing every stage whose "
      "inputs are the same between points (a finetuning sweep trains the seed and experts "
      "once); ends with one table (sweep.md) and one page of charts (sweep.html) of every row "
      "against the values. `seed_share` sets the seed's share of the seed's and experts' token "
      "budget. Preset: configs/sweep-seed-share.toml");
  sweep->add_option("config", w->config,
                    "Run config (TOML); its [study] sweep entries are the default --set. "
                    "Default: the tiny preset");
  sweep
      ->add_option("--set", w->set,
                   "KEY=V1,V2,...: a config key (e.g. finetune.steps=100,400) or seed_share "
                   "(e.g. seed_share=0.1,0.5,0.9); several --set sweep every combination")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sweep->add_option("--run", w->run,
                    "Folder of the sweep (default: runs/<config name>-sweep); "
                    "one run folder per point inside");
  sweep->add_flag("--dry-run", w->dry_run, "Print the points and what each shares, run nothing");
  auto sweeping =
      Command{sweep, [w] {
                const RunConfig c =
                    w->config.empty()
                        ? parse_run_config(default_study_config(), "the default config (tiny)")
                        : load_run_config(w->config);
                const auto& entries = w->set.empty() ? c.study.sweep : w->set;
                std::vector<SweepAxis> axes;
                for (size_t i = 0; i < entries.size(); ++i) {
                  axes.push_back(parse_sweep_axis(
                      entries[i],
                      w->set.empty() ? fmt::format("[study] sweep[{}]", i) : std::string("--set")));
                }
                const fs::path root =
                    w->run.empty() ? fs::path("runs") / (c.name + "-sweep") : fs::path(w->run);
                // Every point's config and plan are checked before anything is written.
                const auto points = sweep_points(c, axes, root);
                StudyOptions o;
                o.btx_binary = fs::read_symlink("/proc/self/exe");
                o.dry_run = w->dry_run;
                o.jobs = c.study.jobs;
                run_sweep(root, axes, points, o);
              }};

  return {sweeping,
          {cmd, [a] {
             if (a->print_config) {
               std::cout << default_study_config();
               return;
             }
             RunConfig c;
             if (!a->config.empty()) {
               c = load_run_config(a->config);
             } else if (!a->run.empty() && fs::exists(RunDir{a->run}.config_file())) {
               c = load_run(RunDir{a->run});
             } else {
               c = parse_run_config(default_study_config(), "the default config (tiny)");
             }
             const Run run(RunDir{a->run.empty() ? fs::path("runs") / c.name : fs::path(a->run)},
                           c);
             plan_study(run);  // [study] and [corpus] are checked before anything is written
             if (!a->dry_run) init_run(run, a->force);
             StudyOptions o;
             o.btx_binary = fs::read_symlink("/proc/self/exe");
             o.dry_run = a->dry_run;
             o.jobs = c.study.jobs;
             run_study(run, o);
           }}};
}

}  // namespace btx::cli
