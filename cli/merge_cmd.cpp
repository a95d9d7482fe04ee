// `btx merge`: combine a run's trained experts with one method of the registry (merge/method.h).
// The method parameters become options of the command, so `btx merge --help` lists them all and
// an option given to a method that does not take it is an error naming the method's own.
#include <iostream>
#include <set>

#include "btx/merge/method.h"
#include "btx/util/error.h"
#include "cli/commands.h"

namespace btx::cli {

namespace {
std::string method_list() {
  std::string out;
  for (const auto& m : merge_methods()) {
    out += fmt::format("  {:<18} {}\n  {:<18} [{}]\n", m.name, m.description, "", m.paper);
    for (const auto& p : m.params) {
      out +=
          fmt::format("  {:<18}   --{} {} [{}{}]\n", "", p.name, p.help, p.expected(),
                      p.default_value.empty() ? "" : fmt::format("; default {}", p.default_value));
    }
  }
  return out;
}
}  // namespace

std::vector<Command> add_merge_commands(CLI::App& app) {
  struct MergeArgs {
    std::string run;
    MergeRequest request;
    bool list = false;
    std::map<std::string, std::string> values;  // every method parameter option
  };
  auto a = std::make_shared<MergeArgs>();
  auto* cmd = app.add_subcommand(
      "merge", "Combine the run's trained experts into merged/<name>/ with one method");
  cmd->add_option("--run", a->run, "Run directory");
  cmd->add_option("--method", a->request.method, "Combination method (see --list)");
  cmd->add_option("--name", a->request.output_name,
                  "Output folder merged/<name> (default: method)");
  cmd->add_flag("--force", a->request.force, "Rebuild even when the output is up to date");
  cmd->add_flag("--resume", a->request.resume, "Methods that train: continue a checkpoint");
  cmd->add_flag("--list", a->list, "List the methods, their parameters and papers");
  // One option per distinct parameter name across the registry.
  std::map<std::string, std::vector<std::string>> users;
  for (const auto& m : merge_methods()) {
    for (const auto& p : m.params) users[p.name].push_back(m.name);
  }
  std::vector<std::pair<std::string, CLI::Option*>> param_options;
  for (const auto& [name, methods] : users) {
    std::string help;
    for (const auto& m : merge_methods()) {
      for (const auto& p : m.params) {
        if (p.name == name && help.empty()) help = p.help;
      }
    }
    param_options.emplace_back(
        name, cmd->add_option("--" + name, a->values[name],
                              fmt::format("{} [{}]", help, fmt::join(methods, ", "))));
  }
  return {{cmd, [a, param_options] {
             if (a->list) {
               std::cout << method_list();
               return;
             }
             BTX_CHECK(!a->run.empty(), "merge: --run DIR is required");
             BTX_CHECK(!a->request.method.empty(), "merge: --method is required (one of: {})", [] {
               std::vector<std::string> n;
               for (const auto& m : merge_methods()) n.push_back(m.name);
               return fmt::format("{}", fmt::join(n, ", "));
             }());
             for (const auto& [name, opt] : param_options) {
               if (opt->count() > 0) a->request.params[name] = a->values[name];
             }
             find_merge_method(a->request.method);  // an unknown method first, as before
             const auto j = run_merge(Run::open(a->run), a->request);
             std::cout << fmt::format("{} -> merged/{} ({})\n", j.value("method", "?"),
                                      j.value("name", "?"), j.value("kind", "?"));
           }}};
}

}  // namespace btx::cli
