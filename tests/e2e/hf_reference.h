// The logits of a checkpoint folder two ways, for the Hugging Face tests: btx's forward pass, and
// tests/python/hf_reference.py's (an independent forward of transformers' definitions that reads
// only the folder's config.json and safetensors).
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/train/checkpoint.h"
#include "btx/util/fs.h"
#include "test_util.h"

namespace btx::testing {

inline torch::Tensor btx_logits(const fs::path& dir, const torch::Tensor& ids) {
  torch::NoGradGuard no_grad;
  CausalLM m = load_model(dir);
  m->eval();
  return m->forward(ids);
}

// hf_reference.py's logits (B, T, V) for `ids` (B, T) from the checkpoint folder `dir`; `tmp`
// holds its input, output and log.
inline torch::Tensor reference_logits(const fs::path& dir, const torch::Tensor& ids,
                                      const fs::path& tmp) {
  nlohmann::json tokens = nlohmann::json::array();
  for (int64_t b = 0; b < ids.size(0); ++b) {
    tokens.push_back(
        std::vector<int64_t>(ids[b].data_ptr<int64_t>(), ids[b].data_ptr<int64_t>() + ids.size(1)));
  }
  write_text(tmp / "tokens.json", tokens.dump());
  const std::string cmd = "/usr/bin/python3 " + std::string(BTX_SOURCE_DIR) +
                          "/tests/python/hf_reference.py " + dir.string() + " " +
                          (tmp / "tokens.json").string() + " " + (tmp / "logits.bin").string() +
                          " > " + (tmp / "reference.log").string() + " 2>&1";
  const int status = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 0) << read_file(tmp / "reference.log");
  const std::string bytes = read_file(tmp / "logits.bin");
  const int64_t V = read_json_file(dir / "config.json")["vocab_size"];
  EXPECT_EQ(static_cast<int64_t>(bytes.size()), ids.numel() * V * 4);
  if (static_cast<int64_t>(bytes.size()) != ids.numel() * V * 4) return torch::zeros({0});
  return torch::from_blob(const_cast<char*>(bytes.data()), {ids.size(0), ids.size(1), V},
                          torch::kFloat32)
      .clone();
}

}  // namespace btx::testing
