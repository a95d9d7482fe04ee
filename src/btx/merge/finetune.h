// MoE finetuning (BTX): a merged MoE model (btx, upcycle) trains further on the balanced domain
// mixture with the run's [finetune] settings, in place in its merged/<name>/ folder (like an
// expert in its folder: the merge is the starting point, checkpoints replace it), resumable.
// All parameters train (BTX's default), only the routers, or the routers and the shared layers
// with the expert FFNs frozen (BTX's ablation: freezing them costs little while the averaged
// layers and the routers adapt). Frozen parameters get no gradient and no optimizer state, so
// they leave finetuning bitwise as they came.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "btx/run/run_dir.h"
#include "btx/train/trainer.h"
#include "btx/util/args.h"

namespace btx {

// What `--train` may choose (model/param_roles.h's selections).
const std::vector<std::string>& finetune_selections();
// "all (every parameter) | router (...) | ...": the help text of the choices.
std::string finetune_selections_help();

// `btx finetune`'s arguments, declared once (util/args.h): the CLI binds its options to them and
// the study writes its finetuning commands from them.
struct FinetuneArgs {
  std::string run, model;
  bool resume = false;
  std::string train = "all";  // one of finetune_selections()
  int64_t steps = 0;          // 0: [finetune] steps
  int64_t stop_after = 0;
  std::string data;  // token shards to train on instead of the run's (e.g. proxies)
  template <typename V>
  void visit(V& v) {
    v.option("--run", run, "Run directory");
    v.option("--model", model, "The merged model, e.g. merged/btx");
    v.flag("--resume", resume, "Continue an interrupted finetuning");
    v.option("--train", train, "What trains: " + finetune_selections_help());
    v.option("--steps", steps,
             "Steps instead of [finetune] steps (a longer or shorter budget; match a dense "
             "baseline with `merge --method dense --extra-tokens`)");
    v.option("--stop-after", stop_after, "Stop with a resumable checkpoint after this step");
    v.option("--data", data,
             "A data folder of token shards (`btx prepare`'s, made with the run's tokenizer) to "
             "train on instead of the run's: its domains in equal shares (MetaMoE's proxies)");
  }
};

// `train_what`: one of finetune_selections(); another is an error listing them. `data`: shards
// to train on instead of the run's (empty: the run's); they must fit the model's vocabulary.
TrainResult finetune_model(const Run& run, const fs::path& model_dir, const std::string& train_what,
                           bool resume, int64_t stop_after = 0, const fs::path& data = {});

}  // namespace btx
