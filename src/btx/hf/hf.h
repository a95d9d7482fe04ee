// Hugging Face interop: a btx model leaves the toolkit as a checkpoint every other tool reads, and
// a pretrained HF Llama can be the seed of a run.
//
// btx's checkpoints already use HF tensor names and config keys, and its RoPE is HF's (rotary
// embedding on the two halves of each head, `rotate_half`), so export is a matter of writing
// exactly what HF expects around the weights: config.json with HF's keys only, the weights
// (sharded with model.safetensors.index.json above a size), tokenizer.model with tokenizer.json
// (tokenizer_json.h), tokenizer_config.json (with the chat template) and
// special_tokens_map.json, generation_config.json. gguf_export.h writes the same models as GGUF.
// Dense models become their base's class (hf_config); MoEs whose routing HF's MoEs compute (top-k;
// soft = top-E; Gumbel and REINFORCE routers, which take the argmax at inference = top-1) become
// MixtralForCausalLM or Qwen3MoeForCausalLM. Models that are not one HF model (a BTM ensemble,
// SMEAR's merged experts, hash / tag / per- sequence routing) are refused with the reason, never
// written wrong.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "btx/data/chat_template.h"
#include "btx/data/tokenizer.h"
#include "btx/model/config.h"
#include "btx/run/model_folder.h"
#include "btx/run/run_dir.h"

namespace btx {

namespace fs = std::filesystem;

// HF's config.json for a btx model config; `what` names the model in errors. A model HF cannot
// express is an error saying why. A dense model is its base's class (LlamaForCausalLM,
// MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM); a BTX MoE is Qwen3MoeForCausalLM on a
// Qwen3 base and MixtralForCausalLM on the others, except Qwen2, which no HF MoE computes.
nlohmann::json hf_config(const ModelConfig& c, const std::string& what,
                         const std::string& torch_dtype = "float32");
// The Hugging Face name of a btx tensor of a model of config `c` (Qwen3-MoE spells its experts
// mlp.experts.j.gate_proj where btx, as Mixtral, has block_sparse_moe.experts.j.w1).
std::string hf_tensor_name(const ModelConfig& c, const std::string& name);

// What every export starts from: a model folder that is one checkpoint HF can express (else an
// error saying why: an ensemble, a per-domain description, SMEAR, BAM, a router HF lacks), its
// config, HF's config for it, and its tokenizer (`tokenizer`, or its run's), of the model's
// vocabulary size.
struct ExportSource {
  ModelFolder folder;  // what it is (its merge record, if merged)
  ModelConfig config;
  nlohmann::json hf_config;
  fs::path tokenizer_file;
  Tokenizer tokenizer;
};
ExportSource open_export_source(const fs::path& model, const fs::path& tokenizer);

struct HfExportOptions {
  fs::path model;      // a checkpoint folder (seed, experts/x, merged/x)
  fs::path tokenizer;  // tokenizer.json or .model (default: the model's run's, found above it)
  fs::path out;        // written whole (a temporary folder renamed into place); must not exist
  std::string dtype = "float32";            // float32 | bfloat16 | float16
  int64_t max_shard_bytes = 2'000'000'000;  // larger weights are sharded with an index
  // tokenizer_config's chat_template; none: a Hugging Face tokenizer's own config as it came, and
  // "plain" beside a sentencepiece tokenizer.
  std::optional<ChatTemplate> chat_template;
};

// Writes the HF checkpoint; returns a summary {"architecture", "shards", "parameters", "bytes"}.
nlohmann::json export_hf(const HfExportOptions& o);

struct HfImportOptions {
  fs::path hf;       // a HF Llama checkpoint folder
  RunDir run;        // the run whose seed it becomes (created)
  RunConfig config;  // the run's config; its [model] and vocab size are replaced by the HF model's
  bool force = false;  // adopt into a run folder made with another config
};

// Makes the HF Llama checkpoint the finished seed of the run: its weights (single or sharded
// safetensors, float32 / bfloat16 / float16, stored as float32), its config as the run's [model],
// and its sentencepiece tokenizer.model as the run's tokenizer (data is tokenized with it). Bad
// checkpoints are errors naming the file and what is wrong: an unsupported architecture (with
// the supported ones), a config.json that is not an object or has a key of the wrong type, a
// missing or mismatched shard, a missing tokenizer.model (tokenizer.json alone is not enough
// yet), tensors missing, extra or of the wrong shape (all checked from the headers before any
// weight is read), a weight that is not finite. Nothing is written before every check has
// passed. Returns the resolved run config.
RunConfig import_hf(const HfImportOptions& o);

}  // namespace btx
