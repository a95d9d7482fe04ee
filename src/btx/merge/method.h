// `btx merge`: the ways of combining a run's trained experts, as a registry. Each method is one
// small file (merge/method_*.cpp) that returns its MergeMethod: a name, a one-line description,
// its paper, its parameters (validated here before anything runs) and the function that builds
// merged/<name>/ from the experts. registry.cpp lists them explicitly; nothing registers itself.
//
// Every merged folder holds merge.json: the method, its resolved parameters, the experts it was
// made from (name + sha256 of their weights), whether its weights come from them, and what the
// method reports. A folder is either a
// checkpoint (model.safetensors + config.json: one dense or routed model) or a description that
// open_scorer() turns into a model (the ensemble, the per-domain posterior average).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/config/run_config.h"
#include "btx/merge/param_average.h"
#include "btx/model/router.h"
#include "btx/run/run_dir.h"
#include "btx/util/args.h"
#include "btx/util/params.h"

namespace btx {

namespace fs = std::filesystem;

// A trained expert as a merge sees it.
struct MergeExpert {
  std::string name;
  fs::path dir;
  std::string sha256;  // of model.safetensors (filled in by run_merge)
  int64_t tokens = 0;  // training tokens it consumed (state.json)
  // sha256 of the seed it was branched from (expert.json), "" when unknown (a checkpoint made
  // elsewhere): experts with different ones do not share a seed.
  std::string seed_sha256;
};

struct MergeContext {
  Run run;  // the run, with its config
  // The run's finished experts (same seed and shapes, sorted by name), or those the method's
  // `experts` chose in their place.
  std::vector<MergeExpert> experts;
  ParamValues params;       // every declared parameter, checked and typed: given or default
  std::string output_name;  // merged/<output_name>
  bool resume = false;      // methods that train: continue a checkpoint

  std::vector<std::string> expert_names() const;
  // Every expert with weight 1: the inputs of a uniform average.
  std::vector<WeightedCheckpoint> uniform_inputs() const;
};

struct MergeMethod {
  std::string name;
  std::string description;  // one line
  std::string paper;        // citation
  std::vector<Param> params;
  // Checks that involve several parameters (e.g. exactly one of --weights and --target), on the
  // resolved values, before anything runs; empty when there are none.
  std::function<void(const ParamValues&)> check_params;
  // Methods that train (dense, bts) write into the output folder as they go (dense resumes its
  // checkpoints, bts starts its short stitch training over); the others build into a temporary
  // folder that is renamed into place.
  bool trains = false;
  // The router of its result, from its resolved parameters, when the result is a routed model
  // (MoE or SMEAR) whose routers start untrained: the study (`btx run`) finetunes it on the
  // mixture ([finetune]) after merging. Empty: the result is not routed.
  std::function<const RouterTraits&(const ParamValues&)> router;
  // The expert-training modes ([experts] mode) whose experts it combines: the MoE builders take
  // dense experts, flexolmo its own two-expert models, averages and ensembles any. Checked by
  // `btx merge` on the experts and by the study's planner on the config, before anything runs.
  std::vector<ExpertMode> expert_modes = {ExpertMode::kAll, ExpertMode::kFfn};
  // Its result is BTM's ensemble (a description; open_scorer() mixes the experts).
  bool ensemble = false;
  bool routed() const { return static_cast<bool>(router); }
  // What the study's `btx finetune --train` trains after merging a routed result (a
  // finetune_selections() name), or "" when the study does not finetune it (its router is
  // trained already). A [study] methods entry's --finetune overrides it.
  std::string study_finetune = "all";
  // Its result is built from the trained experts' weights (false: sparse upcycling copies the
  // seed's FFN, the dense baseline trains the seed further). Recorded in merge.json: what the
  // experts' training tokens are counted for.
  bool from_experts = true;
  // The experts it merges, from the run's own (trained_experts) and its resolved parameters,
  // when it may take some from elsewhere (symphony: another run's, of another seed); each then
  // counts in merge.json and its up-to-date check like the run's own. Empty: the run's own.
  std::function<std::vector<MergeExpert>(const Run&, const ParamValues&, std::vector<MergeExpert>)>
      experts;
  // Builds the merged model into `out` and returns what merge.json should record of it (e.g.
  // the weights used). May check parameters against the experts (e.g. top-k <= N).
  std::function<nlohmann::json(const MergeContext&, const fs::path& out)> build;
};

// The registry, in the order `btx merge --list` shows.
const std::vector<MergeMethod>& merge_methods();
// The method called `name`; unknown is an error listing the known ones.
const MergeMethod& find_merge_method(const std::string& name);

fs::path merged_dir(const RunDir& run, const std::string& name);

struct MergeRequest {
  std::string method;
  std::map<std::string, std::string> params;  // given on the command line
  std::string output_name;                    // empty: the method's name
  bool force = false;                         // rebuild even when merged/<name> is up to date
  bool resume = false;
};

// One option per distinct parameter name of the registry: "--NAME", its help and the methods
// that take it.
std::vector<DynamicOption> merge_param_options();

// `btx merge`'s arguments, declared once (util/args.h): the CLI binds its options to them, the
// study writes its merge commands from them and reads its [study] methods entries with them.
struct MergeArgs {
  std::string run;
  MergeRequest request;
  bool list = false;
  template <typename V>
  void visit(V& v) {
    v.option("--run", run, "Run directory");
    v.option("--method", request.method, "Combination method (see --list)");
    v.option("--name", request.output_name, "Output folder merged/<name> (default: method)");
    v.params(request.params, merge_param_options());
    v.flag("--force", request.force, "Rebuild even when the output is up to date");
    v.flag("--resume", request.resume, "Methods that train: continue a checkpoint");
    v.flag("--list", list, "List the methods, their parameters and papers");
  }
};

// merged/<name>'s name for a request: --name, else the method's; not a plain name is an error.
std::string merge_output_name(const MergeRequest& request);
// The method's parameters for the given ones: each checked (known to the method, of its
// declared type and range), defaults filled in, then the method's check_params. A bad one is
// an error naming the parameter, the value and what was expected. `btx merge` and the study's
// planner (every [study] methods entry, before anything trains) both call it.
ParamValues resolve_merge_params(const MergeMethod& method,
                                 const std::map<std::string, std::string>& given);

// Validates the request (parameters, experts: all finished, branched from the same seed, same
// architecture), then builds merged/<name>/ unless it is already there with the same method,
// parameters and expert weights. Returns merge.json's content.
nlohmann::json run_merge(const Run& run, const MergeRequest& request);

// Checks that `method` combines experts trained in `mode`; otherwise an error naming both and
// `where` the mode comes from (an expert, the config).
void check_merge_expert_mode(const MergeMethod& method, ExpertMode mode, const std::string& where);

// The trained experts of a run as merges see them (without their sha256, which run_merge adds);
// an expert not finished is an error naming it, and experts branched from different seeds or of
// different shapes are refused. It only reads: the commands that own the run (status, merge,
// launch, run) tidy it first (tidy_run), the analyses that call it change nothing.
std::vector<MergeExpert> trained_experts(const RunDir& run);

// Method implementations (merge/method_*.cpp), listed by registry.cpp.
MergeMethod average_method();
MergeMethod weighted_average_method();
MergeMethod fisher_method();
MergeMethod ensemble_method();
MergeMethod dense_method();
MergeMethod btx_method();
MergeMethod upcycle_method();
MergeMethod tag_method();
MergeMethod hash_method();
MergeMethod smear_method();
MergeMethod flexolmo_method();
MergeMethod bam_method();
MergeMethod symphony_method();
MergeMethod bts_method();

}  // namespace btx
