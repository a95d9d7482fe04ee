#include "btx/study/sub_runs.h"

#include <algorithm>

#include "btx/cluster/cluster_corpus.h"
#include "btx/util/fs.h"

namespace btx {

// The run folder of the random-split experts: a run of its own whose tokenizer, data and seed
// are links to the parent's, so only its experts differ.
fs::path random_split_dir(const RunDir& run) {
  return run.root / kRandomSplit;
}

// A sub-run's config: the parent's, with no study of its own.
RunConfig sub_run_config(const RunConfig& c, const std::string& suffix) {
  RunConfig r = c;
  r.name = c.name + "-" + suffix;
  r.study.methods.clear();
  r.study.random_split = false;
  r.study.modes.clear();
  return r;
}

RunConfig random_split_config(const RunConfig& c) {
  RunConfig r = sub_run_config(c, kRandomSplit);
  r.experts.split = "random";
  r.experts.count = static_cast<int>(c.corpus.domains.size());
  r.experts.custom.clear();
  return r;
}

RunConfig other_seed_config(const RunConfig& c) {
  RunConfig r = sub_run_config(c, kOtherSeed);
  r.seed = c.seed + 1;
  return r;
}

// A sub-run in run/<folder> with config `sub`, its tokenizer, data and (unless it trains its
// own) seed linked to the parent's.
void prepare_sub_run(const RunDir& run, const std::string& folder, const RunConfig& sub,
                     const std::vector<std::string>& own) {
  const RunDir s{run.root / folder};
  init_run(Run(s, sub), /*force=*/true);
  for (const char* item :
       {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "data", "seed"}) {
    if (std::find(own.begin(), own.end(), item) != own.end()) continue;
    const fs::path link = s.root / item;
    if (fs::is_symlink(link) || fs::exists(link)) continue;
    // An imported run's tokenizer.json is there from the start; the others may be made later.
    if (fs::path(item).extension() == ".json" && !fs::exists(run.root / item)) continue;
    fs::create_symlink(fs::path("..") / item, link);
  }
}

// ---- c-BTM's discovered domains ([study] clusters) ----

std::vector<std::pair<std::string, std::map<std::string, std::string>>> cluster_rows() {
  return {{"clusters-cached", {}},
          {"clusters-routed", {{"prior", "cluster"}, {"cluster-model", "corpus"}}}};
}

RunConfig clusters_config(const RunConfig& c, const RunDir& run) {
  RunConfig r = sub_run_config(c, kClusters);
  r.corpus.dir = fs::absolute(run.root / kClusters / "corpus").string();
  r.corpus.domains.clear();
  for (int k = 0; k < c.study.clusters; ++k)
    r.corpus.domains.push_back(cluster_name(k, c.study.clusters));
  r.corpus.novel.clear();
  r.experts.split = "domain";
  r.experts.custom.clear();
  r.study.clusters = 0;
  return r;
}

// ---- expert-mode sub-runs ([study] modes) ----

std::string mode_folder(ExpertMode mode) {
  return std::string("experts-") + name_of(mode);
}

RunConfig mode_config(const RunConfig& c, ExpertMode mode) {
  RunConfig r = sub_run_config(c, mode_folder(mode));
  r.experts.mode = mode;
  return r;
}

// A mode sub-run's rows: (method, merged name), its one-model merge last.
std::vector<std::pair<std::string, std::string>> mode_rows(ExpertMode mode) {
  const std::string name = name_of(mode);
  if (!dense_experts(mode))
    return {{"ensemble", name + "-ensemble"},
            {"average", name + "-average"},
            {name, name}};  // flexolmo's own merge
  return {{"ensemble", name + "-ensemble"}, {"average", name + "-average"}, {"btx", name + "-btx"}};
}

}  // namespace btx
