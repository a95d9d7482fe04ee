// Routing analysis of an MoE or SMEAR model (BTX, SMEAR and their baselines): which experts
// the tokens of each domain go to. For every routed layer: the domain x expert usage matrices
// (fraction of a domain's tokens whose top-1 is each expert, and whose chosen experts include
// it), the mean router probability of each expert (for SMEAR: the mean merge weights), the mean
// router entropy (SMEAR: of the merge weights), and the fraction of tokens whose top-1 is their own
// domain's expert (when the merge records which domains each expert stands for); plus per-token
// dumps (token, chosen experts and gates per layer) of a text and of a sample of each domain, for
// the report's token view. Novel domains (no expert trained on them) can be analysed alongside.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "btx/corpus/corpus.h"
#include "btx/run/model_folder.h"
#include "btx/run/run_dir.h"

namespace btx {

class Tokenizer;
struct Routing;

struct RoutingOptions {
  int64_t windows = 16;  // test windows per domain
  std::string text;      // optional text for the per-token dump
  int64_t text_tokens = 256;
  std::vector<CorpusDomain> novel;  // novel domains analysed too (e.g. run_novel_domains)
  int64_t sample_tokens = 0;        // > 0: dump the first tokens of each domain's first window
};

// A domain's text as analysis reads it: up to `windows` windows (n, T+1) of a training domain's
// test split, or of the tokens evaluation scores of a novel domain.
struct DomainWindows {
  std::string domain;
  bool novel = false;
  torch::Tensor windows;  // (n, T+1) int64
};
// The text of token `id` for display: its piece, with invalid UTF-8 (a character split over
// byte pieces) as U+FFFD, so that any JSON holding it can be written.
std::string piece_for_display(const Tokenizer& tok, int64_t id);

// The training domains of the run, then `novel`; a domain without one window is an error.
std::vector<DomainWindows> analysis_windows(const Run& run, const std::vector<CorpusDomain>& novel,
                                            int64_t windows);

// {"model", "experts": [names], "domains": [...], "novel_domains": [...], "layers": [{"layer",
//  "top1": {domain: [E]}, "topk": {domain: [E]}, "entropy": {domain: nats}, "mean_weight":
//  {domain: [E]}, "own_expert_top1": {domain: fraction}, and for BAM models
//  "attention_mean_weight": {domain: [E]}, the attention router's mean soft weights}],
//  "tokens": [{"piece", "layers": [{"experts": [..], "weights": [..]}]}],   (with opts.text)
//  "samples": {domain: [tokens as in "tokens"]}}                          (with sample_tokens)
// "domains" lists the training domains, then the novel ones.
nlohmann::json routing_analysis(const Run& run, const ModelFolder& model,
                                const RoutingOptions& opts);

// The top-1 expert of each token of a forward's routing (N): the first chosen one (top-k and
// sample order them by logit), or the most probable for soft routing, where every expert is
// "chosen".
torch::Tensor routing_top1(const Routing& r);

// The names of a routed model's E expert slots and the domains each stands for, from its
// merge.json (slot numbers and no domains where it records none).
struct ExpertSlots {
  std::vector<std::string> names;
  std::vector<std::vector<std::string>> domains;
};
ExpertSlots expert_slots(const ModelFolder& model, int64_t E);
// The slots that stand for `domain` alone (an expert trained on it and nothing else).
std::vector<int64_t> own_expert_slots(const ExpertSlots& slots, const std::string& domain);

// The usage matrix of one layer as a readable table.
std::string format_routing_layer(const nlohmann::json& analysis, int64_t layer);

}  // namespace btx
