// TEMPORARY: placeholder subcommand lists until each cli/*_cmd.cpp lands.
#include "cli/commands.h"
namespace btx::cli {
std::vector<Command> add_train_commands(CLI::App&) { return {}; }
std::vector<Command> add_eval_commands(CLI::App&) { return {}; }
std::vector<Command> add_corpus_commands(CLI::App&) { return {}; }
}  // namespace btx::cli
