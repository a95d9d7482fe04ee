// A btx model as one GGUF file for llama.cpp, Ollama, LM Studio and the other GGML runtimes, in
// the architecture llama.cpp computes it with: "llama" for llama and mistral bases (dense, and
// with llama.expert_count and stacked expert tensors the MoEs Hugging Face's Mixtral computes),
// "qwen2", "qwen3" and "qwen3moe" (the same refusals as the HF export: ensembles, SMEAR, BAM,
// routers GGML lacks, a Qwen2 MoE are refused with the reason).
//
// As llama.cpp's own converter does, Q and K (and their biases) are permuted from HF's rotary
// layout (the two halves of each head) to GGML's (adjacent pairs) for "llama", and left as they
// are for the Qwen architectures (NeoX rotary, HF's layout); Llama 3's rope scaling goes in as
// rope_freqs (one factor per frequency); norms, biases and routers stay F32 whatever the dtype.
// The tokenizer goes in whole: a sentencepiece model as pieces, scores and types (add_space_prefix
// as the model has it: false for btx's); a byte-level BPE tokenizer.json as llama.cpp's "gpt2"
// model (tokens, types, merges) with its pre-tokenizer named (llama-bpe, qwen2, smollm, gpt2;
// another is refused, since llama.cpp would split text differently); BOS/EOS/UNK, no BOS added;
// the chat template; and general metadata: the name, the merge method and its experts
// (general.base_model.*).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "btx/data/chat_template.h"

namespace btx {

struct GgufExportOptions {
  std::filesystem::path model;      // a checkpoint folder
  std::filesystem::path tokenizer;  // default: the model's run's
  std::filesystem::path out;        // the .gguf file; must not exist
  std::string dtype = "f32";        // f32 | f16 | bf16 | q8_0
  std::string name;                 // general.name (default: the model folder's name)
  // none: the template of the tokenizer_config.json beside a tokenizer.json, else "plain".
  std::optional<ChatTemplate> chat_template;
};

// Writes the file atomically; returns {"architecture", "tensors", "parameters", "bytes",
// "experts"}. A dtype the model cannot be written in (q8_0 with rows that are not a multiple of
// 32 values) is an error naming the tensor.
nlohmann::json export_gguf(const GgufExportOptions& o);

}  // namespace btx
