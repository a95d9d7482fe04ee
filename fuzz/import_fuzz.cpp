// btx import (hf/hf.h) on hostile config.json files beside a real tokenizer and real weights (a
// 2-layer Llama of the seed config, written once): every bad config must end in btx's own error
// naming it, never a crash, a hang or an allocation of the size a config merely claims.
#include <torch/torch.h>

#include <cstdlib>

#include "btx/data/tokenizer.h"
#include "btx/hf/hf.h"
#include "btx/io/safetensors.h"
#include "btx/model/llama.h"
#include "btx/util/error.h"
#include "fuzz_util.h"

namespace {
std::filesystem::path folder;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* tok_path = std::getenv("BTX_FUZZ_TOKENIZER");
  if (tok_path == nullptr) std::abort();
  folder = std::filesystem::temp_directory_path() / ("btx-import-fuzz-" + std::to_string(getpid()));
  std::filesystem::create_directories(folder);
  std::filesystem::copy_file(tok_path, folder / "tokenizer.model",
                             std::filesystem::copy_options::overwrite_existing);
  btx::ModelConfig c;
  c.vocab_size = btx::Tokenizer::load(tok_path).vocab_size();
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  torch::manual_seed(0);
  btx::CausalLM model(c);
  btx::TensorMap weights;
  for (const auto& p : model->named_parameters()) weights[p.key()] = p.value().detach();
  btx::save_safetensors(folder / "model.safetensors", weights);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  btx::write_file_atomic(folder / "config.json",
                         std::string_view(reinterpret_cast<const char*>(data), size));
  const btx::RunDir run{folder / "run"};
  try {
    btx::HfImportOptions o;
    o.hf = folder;
    o.run = run;
    btx::import_hf(o);
  } catch (const btx::Error&) {
  }
  std::filesystem::remove_all(run.root);
  return 0;
}
