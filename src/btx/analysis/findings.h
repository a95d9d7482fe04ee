// The study's findings, one small function each, on the typed rows of the results table: each
// finds its rows by what the models are (ModelFacts: the uniform average, the ensemble of all the
// run's experts, the dense models, sparse upcycling, the best learned-routing model built from
// the experts), never by their names, and states one comparison in numbers.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "btx/analysis/intervals.h"
#include "btx/run/model_folder.h"
#include "btx/run/run_dir.h"

namespace btx {

// One row of the results table: a model's evaluation and what the model is.
struct ResultRow {
  std::string model;  // its eval name
  fs::path dir;       // its folder
  ModelFacts facts;
  bool causal = true;
  std::map<std::string, double> ppl;              // domain -> test perplexity
  double train_mean_ppl = 0, novel_mean_ppl = 0;  // NaN when the evaluation has none
  int64_t params_total = 0, params_active = 0, flops_per_token = 0, training_tokens = 0;
  double training_flops = 0;  // 3 x forward FLOPs per token x tokens, over every part trained
  std::optional<double> gap_to_ensemble_all;  // a one-model row's mean against ensemble-all's
  // Each test window's loss by domain (training, novel), in the table's domain order; empty for
  // an evaluation made before `btx eval` recorded them.
  WindowLosses train_windows, novel_windows;
  std::optional<Interval> train_ci, novel_ci;  // 95% bootstrap intervals of the two means
};

// The resamples every row of the table shares (analysis/intervals.h), for the training and the
// novel domains; absent where no row recorded its windows.
struct TableBootstrap {
  std::optional<WindowBootstrap> train, novel;
  // "row b against row a" on the training (or novel) mean, paired; nullopt when either row lacks
  // the windows.
  std::optional<PairedDifference> difference(const ResultRow& a, const ResultRow& b,
                                             bool novel = false) const;
};

// The rows the findings compare (null where the study has none); each a causal row.
struct References {
  const ResultRow* average = nullptr;        // the routing-free uniform average
  const ResultRow* ensemble_all = nullptr;   // the ensemble of all this run's experts
  const ResultRow* dense_matched = nullptr;  // the dense model matched to the experts' tokens
  const ResultRow* upcycled = nullptr;       // sparse upcycling: learned routing, no experts
  const ResultRow* routed = nullptr;  // the best learned-routing model built from the experts
  const ResultRow* dense_as_many = nullptr;  // dense, as many training tokens as `routed`
};
References find_references(const RunDir& run, const std::vector<ResultRow>& rows);

// The findings in the order results.md lists them; `best` is column -> model.
// Each finding that compares two rows states their paired difference with its 95% interval
// from `boot`, and whether the interval excludes zero.
std::vector<std::string> study_findings(const RunDir& run, const std::vector<ResultRow>& rows,
                                        const References& refs,
                                        const std::map<std::string, std::string>& best,
                                        const TableBootstrap& boot);

}  // namespace btx
