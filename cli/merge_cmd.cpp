// `btx merge`: combine a run's trained experts with one method of the registry (merge/method.h).
// The method parameters become options of the command, so `btx merge --help` lists them all and
// an option given to a method that does not take it is an error naming the method's own.
#include <iostream>
#include <memory>

#include "btx/merge/method.h"
#include "btx/merge/proxies.h"
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
  struct State {
    MergeArgs args;
    std::unique_ptr<CliArgs> cli;
  };
  auto a = std::make_shared<State>();
  auto* cmd = app.add_subcommand(
      "merge", "Combine the run's trained experts into merged/<name>/ with one method");
  a->cli = std::make_unique<CliArgs>(cmd);
  a->args.visit(*a->cli);  // --run, --method, --name, one option per parameter, the flags
  // `btx proxies`: MetaMoE's proxy data for a router trained without the experts' text.
  auto p = std::make_shared<ProxiesArgs>();
  auto* proxies = app.add_subcommand(
      "proxies",
      "MetaMoE's proxies: for each expert, the documents of a public pool most relevant to it "
      "(its likelihood over the seed's) and diverse (a DPP over its hidden states), as a corpus "
      "with one domain per expert, for `btx prepare` and `btx finetune --data`");
  CliArgs proxy_options(proxies);
  p->visit(proxy_options);
  for (const char* required : {"--run", "--pool", "--out"}) proxy_options[required]->required();
  for (const char* shown :
       {"--per-expert", "--candidates", "--chunk-bytes", "--seq-len", "--temperature", "--seed"})
    proxy_options[shown]->capture_default_str();
  Command proxies_cmd{proxies, [p] {
                        const auto j = select_proxies(Run::open(p->run), p->options);
                        for (const auto& [name, docs] : j["proxies"].items())
                          std::cout << fmt::format("{}: {} documents\n", name, docs.size());
                        std::cout << fmt::format("proxies -> {}\n", p->options.out.string());
                      }};
  return {proxies_cmd,
          {cmd, [a] {
             const MergeArgs& m = a->args;
             if (m.list) {
               std::cout << method_list();
               return;
             }
             BTX_CHECK(!m.run.empty(), "merge: --run DIR is required");
             BTX_CHECK(!m.request.method.empty(), "merge: --method is required (one of: {})", [] {
               std::vector<std::string> n;
               for (const auto& method : merge_methods()) n.push_back(method.name);
               return fmt::format("{}", fmt::join(n, ", "));
             }());
             a->cli->apply();
             find_merge_method(m.request.method);  // an unknown method first, as before
             const auto j = run_merge(Run::open(m.run), m.request);
             std::cout << fmt::format("{} -> merged/{} ({})\n", j.value("method", "?"),
                                      j.value("name", "?"), j.value("kind", "?"));
           }}};
}

}  // namespace btx::cli
