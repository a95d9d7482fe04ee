// The btx command line: parses arguments into the library's option structs and calls it.
// Nothing here computes anything; every error ends as one line on stderr and exit code 1.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "btx/util/allocator.h"
#include "btx/util/device.h"
#include "btx/util/error.h"
#include "cli/commands.h"

int main(int argc, char** argv) {
  btx::keep_freed_memory();  // training steps reuse their memory instead of faulting it in
  CLI::App app{
      "btx: train expert language models in parallel and combine them\n"
      "(Branch-Train-Merge, Branch-Train-MiX, SMEAR)"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  // Usage errors read like every other error: one line, then a non-zero exit.
  app.failure_message([](const CLI::App* a, const CLI::Error& e) {
    // The subcommand being parsed: an unknown option falls through to the top (--device), so
    // the error may surface there.
    while (!a->get_subcommands().empty()) a = a->get_subcommands().front();
    std::string path;  // "corpus build " for `btx corpus build`
    for (const CLI::App* s = a; s && s->get_parent(); s = s->get_parent()) {
      path = s->get_name() + " " + path;
    }
    return "btx: error: " + std::string(e.what()) + " (see `btx " + path + "--help`)\n";
  });
  std::string device = "cpu";
  app.add_option("--device", device,
                 "Where training runs (seed, experts, the dense baseline, finetuning): cpu, cuda "
                 "or cuda:N; evaluation, generation and serving run on the CPU. Also read from "
                 "BTX_DEVICE, and passed on to the processes a command starts")
      ->envname("BTX_DEVICE")
      ->capture_default_str();
  std::string precision = "fp32";
  app.add_option("--precision", precision,
                 "fp32, or bf16 for autocast mixed precision in training and evaluation (weights "
                 "and optimizer state stay fp32). Also read from BTX_PRECISION, and passed on")
      ->envname("BTX_PRECISION")
      ->capture_default_str();
  app.fallthrough();  // --device and --precision may come after the subcommand too
  btx::cli::register_commands(app);
  // The first word that is no option (nor an option's value) names the command: an unknown one
  // is an error naming it, before CLI11 would show the top-level help or ask for a subcommand.
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--device" || arg == "--precision") {
      ++i;
      continue;
    }
    if (!arg.empty() && arg[0] == '-') continue;
    std::vector<std::string> names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      names.push_back(sub->get_name());
      known = known || sub->get_name() == arg;
    }
    if (!known) {
      std::cerr << "btx: error: unknown command '" << arg
                << "' (commands: " << fmt::format("{}", fmt::join(names, ", "))
                << "; see `btx --help`)\n";
      return 1;
    }
    break;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    btx::set_default_device(btx::parse_device(device, "--device (or BTX_DEVICE)"));
    btx::set_default_bf16(btx::parse_precision(precision, "--precision (or BTX_PRECISION)"));
    // The processes `btx run` and `launch` start inherit both.
    ::setenv("BTX_DEVICE", device.c_str(), 1);
    ::setenv("BTX_PRECISION", precision.c_str(), 1);
    btx::cli::run_selected(app);
  } catch (const btx::Error& e) {
    std::cerr << "btx: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "btx: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "btx: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
