#include "cli/commands.h"

#include <torch/torch.h>

#include <iostream>

#include "btx/run/run_dir.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx::cli {
namespace {
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
}  // namespace

void CliArgs::params(std::map<std::string, std::string>& values,
                     const std::vector<DynamicOption>& declared) {
  target_ = &values;
  for (const auto& d : declared) {
    dynamic_.emplace_back(d.name, cmd_->add_option("--" + d.name, given_[d.name], d.help));
  }
}

void CliArgs::apply() const {
  if (!target_) return;
  for (const auto& [name, opt] : dynamic_) {
    if (opt->count() > 0) (*target_)[name] = given_.at(name);
  }
}

std::filesystem::path ModelArg::dir() const {
  if (!run.empty()) return resolve_model_path(RunDir{run}, model);
  BTX_CHECK(std::filesystem::exists(model), "model {} does not exist", model);
  return model;
}

void add_model_arg(CLI::App* cmd, ModelArg& arg, const std::string& what) {
  cmd->add_option("--model", arg.model, what + "; with --run also seed, experts/X, merged/X")
      ->required();
  cmd->add_option("--run", arg.run, "Run directory the model is named in");
}

void write_analysis(const std::filesystem::path& out, const nlohmann::json& result, bool json,
                    const std::string& text) {
  std::filesystem::create_directories(out.parent_path());
  write_file_atomic(out, result.dump(1));
  if (json) {
    std::cout << result.dump(2) << "\n";
  } else {
    std::cout << text << "\nwritten to " << out.string() << "\n";
  }
}

void register_commands(CLI::App& app) {
  for (auto* add :
       {&add_corpus_commands, &add_cluster_commands, &add_train_commands, &add_expert_commands,
        &add_merge_commands, &add_routing_commands, &add_eval_commands, &add_run_commands,
        &add_report_commands, &add_hf_commands, &add_generate_commands, &add_serve_commands}) {
    for (auto& c : add(app)) registry().push_back(std::move(c));
  }
}

void run_selected(CLI::App& app) {
  for (auto& c : registry()) {
    if (c.app->parsed()) return c.run();
  }
  fail("no subcommand given (see btx --help)");
}

}  // namespace btx::cli
