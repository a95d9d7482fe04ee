// Any model btx can evaluate, as a Scorer, from its opened folder (run/model_folder.h): a
// checkpoint (seed, expert, dense and routed merges; tag routing follows each domain's label to
// its expert), or a merged description that mixes its experts (the ensemble, the per-domain
// posterior average). An ensemble with the cluster prior routes with its cluster model (c-BTM).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "btx/cluster/cluster_model.h"
#include "btx/eval/scorer.h"
#include "btx/run/model_folder.h"

namespace btx {

std::unique_ptr<Scorer> open_scorer(const ModelFolder& model);

// An ensemble's --cluster-model: relative to its run's folder, or absolute.
fs::path ensemble_cluster_model_path(const fs::path& run, const std::string& given);
// The cluster of each expert, by name, in the experts' order (K indices); an expert no cluster
// is named after, or a cluster model that cannot route prefixes (tf-idf), is an error naming
// `where`.
torch::Tensor cluster_order(const ClusterModel& clusters, const std::vector<std::string>& experts,
                            const std::string& where);

}  // namespace btx
