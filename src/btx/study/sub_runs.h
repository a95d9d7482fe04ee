// The study's sub-runs: runs of their own inside the run folder whose tokenizer, data and seed
// are links to the parent's, so that only their experts differ -- BTM's random split (experts on
// random equal shares of the mixture) and one per [study] modes entry (experts trained in
// another mode). Their configs, folders and rows, for the study's methods and its plan.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "btx/config/run_config.h"
#include "btx/run/run_dir.h"

namespace btx {

inline constexpr const char* kRandomSplit = "random-split";  // sub-run folder, merge and row name
// The sub-run of another seed: its own seed, trained from random_seed + 1 on the same data, and
// its experts. The study trains it when a [study] methods entry takes experts --from it.
inline constexpr const char* kOtherSeed = "other-seed";

fs::path random_split_dir(const RunDir& run);
// A sub-run's config: the parent's, with no study of its own.
RunConfig sub_run_config(const RunConfig& c, const std::string& suffix);
RunConfig random_split_config(const RunConfig& c);
RunConfig other_seed_config(const RunConfig& c);
// A sub-run in run/<folder> with config `sub`, its tokenizer, data and seed linked to the
// parent's, except those it makes itself (`own`: "seed", "data").
void prepare_sub_run(const RunDir& run, const std::string& folder, const RunConfig& sub,
                     const std::vector<std::string>& own = {});

// ---- c-BTM's discovered domains ([study] clusters) ----
inline constexpr const char* kClusters = "clusters";  // the sub-run's folder
// Its rows: (merged name, the ensemble's parameters).
std::vector<std::pair<std::string, std::map<std::string, std::string>>> cluster_rows();
// Its config: the parent's, its corpus the clustered text (clusters/corpus, absolute), its
// domains the K clusters, no novel domains.
RunConfig clusters_config(const RunConfig& c, const RunDir& run);

// ---- expert-mode sub-runs ([study] modes) ----
std::string mode_folder(ExpertMode mode);
RunConfig mode_config(const RunConfig& c, ExpertMode mode);
// A mode sub-run's rows: (method, merged name), its one-model merge last.
std::vector<std::pair<std::string, std::string>> mode_rows(ExpertMode mode);

}  // namespace btx
