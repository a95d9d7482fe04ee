// `btx routing`: which experts the tokens of each domain go to, per MoE layer. `btx graft`: which
// parameter group of the merge costs what (each expert against the average, group by group).
// `btx barrier`: the test loss along the straight path between two models (mode connectivity).
#include <iostream>

#include "btx/analysis/barrier.h"
#include "btx/analysis/graft.h"
#include "btx/analysis/routing.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "cli/commands.h"

namespace btx::cli {

std::vector<Command> add_routing_commands(CLI::App& app) {
  struct RoutingArgs {
    std::string run, model, text_file, out;
    int64_t layer = -1;
    bool json = false;
    RoutingOptions opts;
  };
  auto a = std::make_shared<RoutingArgs>();
  auto* cmd = app.add_subcommand(
      "routing",
      "Routing analysis of an MoE or SMEAR model: domain x expert usage (SMEAR: mean merge "
      "weights) per layer, entropy, own-domain routing, per-token choices of a text");
  cmd->add_option("--run", a->run, "Run directory")->required();
  cmd->add_option("--model", a->model, "The routed model, e.g. merged/btx or merged/smear")
      ->required();
  cmd->add_option("--windows", a->opts.windows, "Test windows per domain")->capture_default_str();
  cmd->add_option("--text", a->text_file, "A text file whose tokens' routing is dumped");
  cmd->add_option("--layer", a->layer, "Layer to print (default: the middle one)");
  cmd->add_flag("--json", a->json, "Print the whole analysis as JSON");
  cmd->add_option("--out", a->out, "Also write the JSON to this file");
  auto routing =
      Command{cmd, [a] {
                const Run run = Run::open(a->run);
                const fs::path model = resolve_model_path(run, a->model);
                if (!a->text_file.empty()) a->opts.text = read_file(a->text_file);
                const auto result = routing_analysis(run, ModelFolder::open(model), a->opts);
                if (!a->out.empty()) write_file_atomic(a->out, result.dump(2));
                if (a->json) {
                  std::cout << result.dump(2) << "\n";
                  return;
                }
                const auto n = static_cast<int64_t>(result["layers"].size());
                const int64_t layer = a->layer >= 0 ? a->layer : n / 2;
                BTX_CHECK(layer < n, "--layer {}: the model has {} MoE layers", layer, n);
                std::cout << format_routing_layer(result, layer);
              }};

  struct GraftArgs {
    std::string run;
    bool json = false;
    GraftOptions opts;
  };
  auto g = std::make_shared<GraftArgs>();
  auto* graft = app.add_subcommand(
      "graft",
      "Which part of the merge costs what: each expert on its own domain's test text with every "
      "parameter group (embedding, attention, norms, FFN) taken from it or from the reference "
      "(the experts' uniform average, the seed, a dense merge): 16 hybrids per domain and each "
      "group's Shapley share of the loss gap; written to analysis/graft-<reference>.json");
  graft->add_option("--run", g->run, "Run directory (a mode sub-run: runs/X/experts-ffn)")
      ->required();
  graft
      ->add_option("--reference", g->opts.reference,
                   "What each expert is compared with: average (the experts' uniform mean), "
                   "seed, or a dense model of the run (merged/fisher, merged/average, ...)")
      ->capture_default_str();
  graft->add_option("--tokens", g->opts.max_tokens, "Test tokens per domain (0: the whole split)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  graft->add_flag("--json", g->json, "Print the whole analysis as JSON");
  auto grafting = Command{graft, [g] {
                            const Run run = Run::open(g->run);
                            const auto result = graft_analysis(run, g->opts);
                            write_analysis(graft_path(run, g->opts.reference), result, g->json,
                                           g->json ? "" : format_graft(result));
                          }};

  auto b = std::make_shared<BarrierArgs>();
  auto* barrier = app.add_subcommand(
      "barrier",
      "Loss barrier (linear mode connectivity): test loss of each training domain along the "
      "straight line (1-a)*A + a*B between two models of one seed, and the barrier's height "
      "(max on the path - the mean of the ends). --pairs: every pair of experts and each expert "
      "with the seed. Written to analysis/barrier-A--B.json (--pairs: analysis/barriers.json)");
  CliArgs options(barrier);
  b->visit(options);
  options["--run"]->required();
  options["--points"]->capture_default_str();
  options["--tokens"]->capture_default_str();
  auto barriers =
      Command{barrier, [b] {
                const Run run = Run::open(b->run);
                BTX_CHECK(b->pairs == (b->a.empty() && b->b.empty()),
                          "give --a MODEL and --b MODEL, or --pairs");
                BTX_CHECK(b->pairs || (!b->a.empty() && !b->b.empty()),
                          "--a and --b go together: give both ends of the path");
                const auto result = b->pairs ? expert_barriers(run, b->opts)
                                             : loss_barrier(run, b->a, b->b, b->opts);
                write_analysis(
                    b->pairs ? barriers_path(run) : barrier_path(run, b->a, b->b), result, b->json,
                    b->json ? "" : (b->pairs ? format_barriers(result) : format_barrier(result)));
              }};
  return {routing, grafting, barriers};
}

}  // namespace btx::cli
