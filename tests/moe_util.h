// Helpers shared by the MoE and SMEAR layer tests.
#pragma once

#include <torch/torch.h>

#include <string>

#include "btx/model/moe.h"
#include "model_util.h"

namespace btx::testing {

// A small routed config: vocab 30, C 8, F 12, 2 layers, context 16.
inline ModelConfig routed_config(const std::string& model_type, int64_t experts, int64_t k,
                                 const std::string& mode) {
  ModelConfig c = small_model_config(30, 8, 12, 2, 2, 2, 16);
  c.model_type = parse_named<ModelType>(model_type, "routed_config");
  c.num_local_experts = experts;
  c.num_experts_per_tok = k;
  c.router_mode = mode;
  return c;
}

// Copies a dense SwiGLU's weights into expert e of an MoE / SMEAR layer (w1 = gate, w3 = up,
// w2 = down).
inline void load_expert(RoutedFfnImpl& moe, int64_t e, SwiGluMlpImpl& mlp) {
  torch::NoGradGuard ng;
  auto* ex = moe.experts[e]->as<MoeExpertImpl>();
  ex->w1->weight.copy_(mlp.gate_proj->weight);
  ex->w3->weight.copy_(mlp.up_proj->weight);
  ex->w2->weight.copy_(mlp.down_proj->weight);
}

}  // namespace btx::testing
