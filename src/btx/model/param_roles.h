// What each parameter of a model is, read from its (Hugging Face) name, in one place: the token
// embedding, attention, norms, the LM head, the FFN (the dense MLP or an MoE/SMEAR expert's
// weights) and the routers. Training modes that freeze part of a model ([experts] train = "ffn",
// `btx finetune --train router+shared`) choose parameters by role, never by name.
#pragma once

#include <set>
#include <string>
#include <vector>

namespace btx {

enum class ParamRole {
  kEmbedding,  // model.embed_tokens (also the LM head when tied)
  kAttention,  // model.layers.i.self_attn.{q,k,v,o}_proj (BAM: self_attn.experts.j.*_proj)
  kNorm,       // the RMSNorms: input_layernorm, post_attention_layernorm, model.norm
  kLmHead,     // lm_head (untied models only)
  kFfn,        // mlp.{gate,up,down}_proj, block_sparse_moe.experts.j.w*, smear.experts.j.w*
  kRouter,     // block_sparse_moe.gate, block_sparse_moe.baseline (REINFORCE), smear.gate,
               // self_attn.gate (BAM's attention router)
};

const char* role_name(ParamRole role);
// The role of a parameter named as in model.safetensors; a name btx does not make is an error
// naming it.
ParamRole param_role(const std::string& name);

// A choice of parameters to train, by role.
struct ParamSelection {
  std::string name;           // "all", "ffn", "router", "router+shared"
  std::set<ParamRole> roles;  // the roles that train
  const char* summary;        // one line
  bool all() const { return roles.size() == 6; }
  bool trains(const std::string& param) const { return roles.count(param_role(param)) > 0; }
};

// Every selection, in the order help text lists them.
const std::vector<ParamSelection>& param_selections();
// The selection called `name`, among `allowed` (a subset of the names above); another name is
// an error naming `where` and listing the allowed ones.
const ParamSelection& param_selection(const std::string& name,
                                      const std::vector<std::string>& allowed,
                                      const std::string& where);

}  // namespace btx
