#include "btx/model/param_roles.h"

#include <fmt/format.h>

#include <algorithm>

#include "btx/util/error.h"

namespace btx {

const char* role_name(ParamRole role) {
  switch (role) {
    case ParamRole::kEmbedding:
      return "embedding";
    case ParamRole::kAttention:
      return "attention";
    case ParamRole::kNorm:
      return "norm";
    case ParamRole::kLmHead:
      return "lm_head";
    case ParamRole::kFfn:
      return "ffn";
    case ParamRole::kRouter:
      return "router";
  }
  return "?";
}

namespace {
bool has(const std::string& name, const char* part) {
  return name.find(part) != std::string::npos;
}
bool ends_with(const std::string& name, const std::string& tail) {
  return name.size() >= tail.size() &&
         name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
}
}  // namespace

ParamRole param_role(const std::string& name) {
  if (name == "model.embed_tokens.weight") return ParamRole::kEmbedding;
  if (name == "lm_head.weight") return ParamRole::kLmHead;
  if (name == "model.norm.weight" || ends_with(name, "layernorm.weight")) return ParamRole::kNorm;
  if (name.rfind("model.layers.", 0) == 0) {
    if (has(name, ".self_attn.gate.")) return ParamRole::kRouter;  // BAM's attention router
    if (has(name, ".self_attn.")) return ParamRole::kAttention;
    if (has(name, ".mlp.") || has(name, ".block_sparse_moe.experts.") ||
        has(name, ".smear.experts.")) {
      return ParamRole::kFfn;
    }
    if (has(name, ".block_sparse_moe.gate.") || has(name, ".block_sparse_moe.baseline.") ||
        has(name, ".block_sparse_moe.null_gate.") || has(name, ".block_sparse_moe.context_mix") ||
        has(name, ".smear.gate.")) {
      return ParamRole::kRouter;
    }
  }
  fail("parameter '{}' has no known role (embedding, attention, norm, lm_head, ffn, router)", name);
}

const std::vector<ParamSelection>& param_selections() {
  using R = ParamRole;
  static const std::vector<ParamSelection> table = {
      {"all",
       {R::kEmbedding, R::kAttention, R::kNorm, R::kLmHead, R::kFfn, R::kRouter},
       "every parameter"},
      {"ffn", {R::kFfn}, "the FFNs only; embeddings, attention, norms and LM head stay frozen"},
      {"router", {R::kRouter}, "the routers only"},
      {"router+shared",
       {R::kEmbedding, R::kAttention, R::kNorm, R::kLmHead, R::kRouter},
       "the routers and the shared layers (embeddings, attention, norms); the expert FFNs stay "
       "frozen"},
  };
  return table;
}

const ParamSelection& param_selection(const std::string& name,
                                      const std::vector<std::string>& allowed,
                                      const std::string& where) {
  const bool ok = std::find(allowed.begin(), allowed.end(), name) != allowed.end();
  for (const auto& s : param_selections()) {
    if (ok && s.name == name) return s;
  }
  fail("{}: '{}' is not one of {}", where, name, fmt::join(allowed, ", "));
}

}  // namespace btx
