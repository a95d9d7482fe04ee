// `btx run`: the whole study (study/study.h), from a config file or the embedded tiny preset.
#include <iostream>

#include "btx/study/study.h"
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
  return {{cmd, [a] {
             if (a->print_config) {
               std::cout << default_study_config();
               return;
             }
             RunConfig c;
             if (!a->config.empty()) {
               c = load_run_config(a->config);
             } else if (!a->run.empty() && fs::exists(RunDir{a->run}.config())) {
               c = load_run(RunDir{a->run});
             } else {
               c = parse_run_config(default_study_config(), "the default config (tiny)");
             }
             RunDir run{a->run.empty() ? fs::path("runs") / c.name : fs::path(a->run)};
             plan_study(run, c);  // [study] and [corpus] are checked before anything is written
             if (!a->dry_run) init_run(run, c, a->force);
             StudyOptions o;
             o.btx_binary = fs::read_symlink("/proc/self/exe");
             o.dry_run = a->dry_run;
             o.jobs = c.study.jobs;
             run_study(run, c, o);
           }}};
}

}  // namespace btx::cli
