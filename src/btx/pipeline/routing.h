// Routing analysis of an MoE or SMEAR model (BTX, SMEAR and their baselines): which experts
// the tokens of each domain go to. For every routed layer: the domain x expert usage matrices
// (fraction of a domain's tokens whose top-1 is each expert, and whose chosen experts include
// it), the mean router probability of each expert (for SMEAR: the mean merge weights), the mean
// router entropy (SMEAR: of the merge weights), and the fraction of tokens whose top-1 is their own
// domain's expert (when the merge records which domains each expert stands for); plus a per-token
// dump of a text (token, chosen experts and gates per layer) for the report's token view.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "btx/pipeline/run_dir.h"

namespace btx {

struct RoutingOptions {
  int64_t windows = 16;  // test windows per domain
  std::string text;      // optional text for the per-token dump
  int64_t text_tokens = 256;
};

// {"model", "experts": [names], "domains": [...], "layers": [{"layer", "top1": {domain: [E]},
//  "topk": {domain: [E]}, "entropy": {domain: nats}, "mean_weight": {domain: [E]},
//  "own_expert_top1": {domain: fraction}}],
//  "tokens": [{"piece", "layers": [{"experts": [..], "weights": [..]}]}]}
nlohmann::json routing_analysis(const RunDir& run, const RunConfig& c, const fs::path& model_dir,
                                const RoutingOptions& opts);

// The usage matrix of one layer as a readable table.
std::string format_routing_layer(const nlohmann::json& analysis, int64_t layer);

}  // namespace btx
