// Aligning the FFN neurons of two dense models that do not share a seed (Symphony-MoE, Wang et
// al. 2025, arXiv:2509.18542, after Git Re-Basin / Ainsworth et al. 2023): in every layer the
// expert's neurons (rows of gate_proj and up_proj, columns of down_proj) are permuted to those of
// an anchor model that they match best, measured by the correlation of their activations
// silu(gate x) * up x on the same calibration text, and the permutation chosen is the exact
// optimum of the summed correlation (merge/assignment.h). A permutation of an FFN's neurons does
// not change what the model computes; it only puts the expert's neurons where the anchor's
// counterparts are, so that averaging or mixing them afterwards combines like with like.
//
// The residual stream is aligned the same way, once for the whole model (every layer reads and
// writes the same stream): its dimensions are matched by the correlation of the hidden states
// at every layer's input and the final output, and the permutation is applied to every tensor
// that reads or writes the stream (the embedding's columns, the norms, the q/k/v and gate/up
// projections' inputs, the o/down projections' outputs, the LM head's inputs). RMSNorm commutes
// with a permutation, so this too leaves the model's output unchanged. Without it an expert of
// another seed would read a stream whose dimensions mean something else in the shared layers
// it is mixed with; with it, its FFNs read the anchor's dimensions (where the seeds learned a
// stream that is a permutation of one another, exactly; otherwise as close as a permutation
// gets).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "btx/model/llama.h"

namespace btx {

// The correlation (F, F) of the anchor's neurons (rows) with the expert's (columns) in every
// layer, from their activations on `windows` (N, T) of token ids (the same text through both
// models, `batch` windows at a time). Both must be dense models of the same shape.
std::vector<torch::Tensor> neuron_correlations(CausalLM& anchor, CausalLM& expert,
                                               const torch::Tensor& windows, int64_t batch = 8);

// Permutes `expert`'s FFN neurons in place, layer by layer, to the anchor's they correlate with
// best on `windows`; returns each layer's permutation (perm[i]: the expert neuron now at i) and,
// when `correlations` is given, the correlations it was chosen from (before the permutation).
std::vector<std::vector<int64_t>> align_ffn_neurons(
    CausalLM& anchor, CausalLM& expert, const torch::Tensor& windows,
    std::vector<torch::Tensor>* correlations = nullptr);

// The correlation (C, C) of the anchor's residual-stream dimensions (rows) with the expert's
// (columns), over the hidden states entering every layer and leaving the last, on `windows`.
torch::Tensor residual_correlations(CausalLM& anchor, CausalLM& expert,
                                    const torch::Tensor& windows, int64_t batch = 8);

// Permutes `expert`'s residual stream in place to the anchor's dimensions it correlates with
// best on `windows`; returns the permutation (perm[i]: the expert dimension now at i) and, when
// `correlation` is given, the correlation it was chosen from (before the permutation).
std::vector<int64_t> align_residual_stream(CausalLM& anchor, CausalLM& expert,
                                           const torch::Tensor& windows,
                                           torch::Tensor* correlation = nullptr);

// Puts dimension perm[i] of a dense model's residual stream at position i in every tensor that
// reads or writes it (function-preserving).
void permute_residual_stream(CausalLM& model, const std::vector<int64_t>& perm);

// Puts neuron perm[i] of layer `layer`'s dense FFN at position i (function-preserving).
void permute_ffn_neurons(CausalLM& model, int64_t layer, const std::vector<int64_t>& perm);

}  // namespace btx
