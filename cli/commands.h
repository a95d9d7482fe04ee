// Subcommand registry of the btx binary: each command file adds its CLI11 subcommand and the
// function that runs it. The list in commands.cpp is explicit (no static self-registration).
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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
