// Any model btx can evaluate, as a Scorer, from its opened folder (run/model_folder.h): a
// checkpoint (seed, expert, dense and routed merges; tag routing follows each domain's label to
// its expert), or a merged description that mixes its experts (the ensemble, the per-domain
// posterior average).
#pragma once

#include <memory>

#include "btx/eval/scorer.h"
#include "btx/run/model_folder.h"

namespace btx {

std::unique_ptr<Scorer> open_scorer(const ModelFolder& model);

}  // namespace btx
