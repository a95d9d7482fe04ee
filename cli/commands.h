// Subcommand registry of the btx binary: each command file adds its CLI11 subcommand and the
// function that runs it. The list in commands.cpp is explicit (no static self-registration).
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "btx/util/args.h"

namespace btx::cli {

struct Command {
  CLI::App* app;
  std::function<void()> run;
};

// The --model MODEL [--run DIR] pair of the commands that open one model: a model folder, or
// with --run a name inside that run (seed, experts/NAME, merged/NAME).
struct ModelArg {
  std::string model, run;
  // The model's folder; one that does not exist is an error naming it.
  std::filesystem::path dir() const;
};
// Adds both options; `what` says which folders the command takes ("Checkpoint folder").
void add_model_arg(CLI::App* cmd, ModelArg& arg, const std::string& what);

// Binds a declared argument struct (util/args.h) to a subcommand's options: each declared option
// becomes a CLI11 option of the same flag and help. Options whose names are only known at run
// time (params) are read into their map by apply(), after parsing, when given.
class CliArgs {
 public:
  explicit CliArgs(CLI::App* cmd) : cmd_(cmd) {}
  template <typename T>
  void option(const char* flag, T& v, const std::string& help) {
    cmd_->add_option(flag, v, help);
  }
  template <typename T>
  void option(const char* flag, std::vector<T>& v, const std::string& help) {
    cmd_->add_option(flag, v, help)->delimiter(',');
  }
  void repeated(const char* flag, std::vector<std::string>& v, const std::string& help) {
    cmd_->add_option(flag, v, help);
  }
  void flag(const char* flag, bool& v, const std::string& help) { cmd_->add_flag(flag, v, help); }
  void params(std::map<std::string, std::string>& values,
              const std::vector<DynamicOption>& declared);
  // The dynamic options given on the command line, into their map.
  void apply() const;
  // The option declared as `flag` (its first name: "--jobs" for "--jobs,-j").
  CLI::Option* operator[](const char* flag) const { return cmd_->get_option(flag); }

 private:
  CLI::App* cmd_;
  std::map<std::string, std::string>* target_ = nullptr;
  std::map<std::string, std::string> given_;  // storage of the dynamic options
  std::vector<std::pair<std::string, CLI::Option*>> dynamic_;
};

// Writes an analysis's `result` to `out` (atomically, its folder made), then prints it: as JSON
// with `json`, else as `text` and where it was written.
void write_analysis(const std::filesystem::path& out, const nlohmann::json& result, bool json,
                    const std::string& text);

void register_commands(CLI::App& app);
void run_selected(CLI::App& app);

// One per file in cli/: each adds its subcommand(s) to `app` and returns them.
std::vector<Command> add_corpus_commands(CLI::App& app);
std::vector<Command> add_train_commands(CLI::App& app);
std::vector<Command> add_eval_commands(CLI::App& app);
std::vector<Command> add_cluster_commands(CLI::App& app);
std::vector<Command> add_expert_commands(CLI::App& app);
std::vector<Command> add_merge_commands(CLI::App& app);
std::vector<Command> add_routing_commands(CLI::App& app);
std::vector<Command> add_run_commands(CLI::App& app);
std::vector<Command> add_hf_commands(CLI::App& app);
std::vector<Command> add_generate_commands(CLI::App& app);
std::vector<Command> add_serve_commands(CLI::App& app);
std::vector<Command> add_report_commands(CLI::App& app);

}  // namespace btx::cli
