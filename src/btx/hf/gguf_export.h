// A btx model as one GGUF file for llama.cpp, Ollama, LM Studio and the other GGML runtimes: the
// "llama" architecture, which covers dense models and, with llama.expert_count and stacked
// expert tensors, the MoEs that Hugging Face's Mixtral computes (the same refusals as the HF
// export: ensembles, SMEAR, BAM and routers that GGML lacks are refused with the reason).
//
// As llama.cpp's own converter does, Q and K are permuted from HF's rotary layout (the two halves
// of each head) to GGML's (adjacent pairs); norms and routers stay F32 whatever the dtype. The
// tokenizer goes in whole (pieces, scores, types, BOS/EOS/UNK, no BOS added,
// add_space_prefix as the model has it: false for btx's), with the chat template, and general
// metadata: the name, the merge method and its experts (general.base_model.*).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "btx/data/chat_template.h"

namespace btx {

struct GgufExportOptions {
  std::filesystem::path model;      // a checkpoint folder
  std::filesystem::path tokenizer;  // default: the model's run's
  std::filesystem::path out;        // the .gguf file; must not exist
  std::string dtype = "f32";        // f32 | f16 | bf16 | q8_0
  std::string name;                 // general.name (default: the model folder's name)
  ChatTemplate chat_template = builtin_chat_template("plain");
};

// Writes the file atomically; returns {"architecture", "tensors", "parameters", "bytes",
// "experts"}. A dtype the model cannot be written in (q8_0 with rows that are not a multiple of
// 32 values) is an error naming the tensor.
nlohmann::json export_gguf(const GgufExportOptions& o);

}  // namespace btx
