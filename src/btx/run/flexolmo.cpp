#include "btx/run/flexolmo.h"

#include <fmt/format.h>

#include "btx/io/safetensors.h"
#include "btx/model/moe.h"
#include "btx/model/param_roles.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"

namespace btx {

void write_flexolmo_expert(const fs::path& seed_dir, const torch::Tensor& own_windows,
                           const torch::Tensor& anchor_windows, int64_t seq_len,
                           const fs::path& out) {
  const ModelConfig dense = load_model_config(seed_dir);
  BTX_CHECK(!dense.is_routed(), "{}: a flexolmo expert branches from a dense seed, not a {} model",
            seed_dir.string(), name_of(dense.model_type));
  BTX_CHECK(own_windows.size(0) >= 1 && anchor_windows.size(0) >= 1,
            "flexolmo expert: no held-out text for its router rows ({} own windows, {} for the "
            "anchor)",
            own_windows.size(0), anchor_windows.size(0));
  ModelConfig moe = dense;
  moe.model_type = ModelType::kMixtral;
  moe.num_local_experts = 2;
  moe.num_experts_per_tok = 2;
  moe.router_mode = "top-k";
  moe.router_aux_loss_coef = 0;  // two slots that should not be balanced
  moe.router_z_loss_coef = 0;
  moe.validate("flexolmo expert config");

  TensorMap tensors = load_safetensors(seed_dir / "model.safetensors").tensors;
  for (int64_t i = 0; i < dense.num_hidden_layers; ++i) {
    for (const char* w : {"w1", "w2", "w3"}) {
      auto node = tensors.extract(dense_ffn_name(i, w));
      BTX_CHECK(!node.empty(), "{}: no {}", seed_dir.string(), dense_ffn_name(i, w));
      for (int64_t slot : {kFlexolmoAnchor, kFlexolmoOwn}) {
        tensors[moe_ffn_name(i, slot, w)] = node.mapped().clone();
      }
    }
    tensors[moe_router_name(i)] = torch::zeros({2, dense.hidden_size});
  }
  fs::create_directories(out);
  save_safetensors(out / "model.safetensors", tensors, {{"format", "pt"}});
  write_file_atomic(out / "config.json", model_config_to_json(moe).dump(2));

  // Both slots hold the seed's FFN, so the FFN inputs are the seed's whatever the routing.
  CausalLM model = load_model(out);
  const FfnInputStatistics st =
      ffn_input_statistics(model, {anchor_windows, own_windows}, {0, 0}, seq_len, false);
  torch::NoGradGuard no_grad;
  const auto layers = routed_layers(model);
  for (size_t l = 0; l < layers.size(); ++l) {
    auto& w = layers[l]->gate->weight;
    for (int64_t slot : {kFlexolmoAnchor, kFlexolmoOwn}) {
      const auto sum = st.sums[l][static_cast<size_t>(slot)].to(torch::kFloat32);
      w[slot].copy_(sum / sum.norm());  // the normalised mean
    }
  }
  TensorMap trained;
  for (const auto& p : model->named_parameters()) trained[p.key()] = p.value();
  save_safetensors(out / "model.safetensors", trained, {{"format", "pt"}});
}

bool flexolmo_trains(const std::string& param) {
  switch (param_role(param)) {
    case ParamRole::kRouter:
      return true;
    case ParamRole::kFfn:
      return param.find(fmt::format(".experts.{}.", kFlexolmoOwn)) != std::string::npos;
    default:
      return false;
  }
}

std::map<std::string, torch::Tensor> flexolmo_update_masks(const ModelConfig& c) {
  std::map<std::string, torch::Tensor> masks;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    auto m = torch::ones({c.num_local_experts, c.hidden_size});
    m[kFlexolmoAnchor].zero_();
    masks[moe_router_name(i)] = m;
  }
  return masks;
}

}  // namespace btx
