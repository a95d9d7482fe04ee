// Checkpoints: save -> load gives identical logits; the wrong architecture or a damaged file is
// a clear error; train state and optimizer state round-trip.
#include "btx/train/checkpoint.h"

#include <gtest/gtest.h>

#include "btx/io/safetensors.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "model_util.h"
#include "test_util.h"

namespace btx {
namespace {

ModelConfig cfg() {
  return testing::small_model_config(40, 16, 24, 2, 2, 2, 16);
}

TEST(Checkpoint, SaveLoadIdenticalLogits) {
  testing::TempDir dir;
  torch::manual_seed(3);
  CausalLM m(cfg());
  save_checkpoint(dir / "ck", {&m, nullptr, nullptr, {}});
  CausalLM back = load_model(dir / "ck");
  auto ids = torch::randint(0, 40, {2, 10}, torch::kLong);
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::equal(m(ids), back(ids)));
  EXPECT_EQ(back->config(), m->config());
}

TEST(Checkpoint, DifferentArchitectureIsAnError) {
  testing::TempDir dir;
  CausalLM m(cfg());
  save_checkpoint(dir / "ck", {&m, nullptr, nullptr, {}});
  auto other = cfg();
  other.intermediate_size = 32;
  CausalLM o(other);
  try {
    load_weights(o, dir / "ck");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mlp.gate_proj.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("different architecture"), std::string::npos);
  }
}

TEST(Checkpoint, TruncatedWeightsAreAnErrorAndBadConfigNamesKey) {
  testing::TempDir dir;
  CausalLM m(cfg());
  save_checkpoint(dir / "ck", {&m, nullptr, nullptr, {}});
  const auto file = dir / "ck" / "model.safetensors";
  auto bytes = read_file(file);
  write_file_atomic(file, bytes.substr(0, bytes.size() - 10));
  EXPECT_THROW(load_model(dir / "ck"), Error);
  auto j = model_config_to_json(cfg());
  j["hiden_layers"] = 3;
  write_file_atomic(dir / "ck" / "config.json", j.dump());
  try {
    load_model_config(dir / "ck");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hiden_layers"), std::string::npos) << e.what();
  }
}

// Hostile weights found by an attacker: an integer dtype over float data, and a sparse file that
// declares a 3 GB tensor. Both are refused from the header, before any tensor is allocated.
TEST(Checkpoint, IntegerWeightsAndHugeDeclaredTensorsAreRefusedFromTheHeader) {
  testing::TempDir dir;
  CausalLM m(cfg());
  save_checkpoint(dir / "ck", {&m, nullptr, nullptr, {}});
  const auto file = dir / "ck" / "model.safetensors";
  TensorMap relabelled = load_safetensors(file).tensors;
  relabelled["model.norm.weight"] = relabelled["model.norm.weight"].view(torch::kInt32);
  save_safetensors(file, relabelled);
  std::string msg;
  try {
    load_model(dir / "ck");
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("model.norm.weight' is I32; model weights are floating point"),
            std::string::npos)
      << msg;

  // Every tensor declared as the model has it but the final norm, 3 GB; the file extended
  // sparsely, so that every offset check of the format passes.
  const uint64_t huge = 3ull << 30;
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& p : m->named_parameters()) {
    const bool big = p.key() == "model.norm.weight";
    const uint64_t bytes = big ? huge : p.value().numel() * 4;
    header[p.key()] = {
        {"dtype", "F32"},
        {"shape", big ? std::vector<int64_t>{int64_t(huge / 4)} : p.value().sizes().vec()},
        {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  const std::string text = header.dump();
  const uint64_t n = text.size();
  write_file_atomic(file, std::string(reinterpret_cast<const char*>(&n), 8) + text);
  fs::resize_file(file, 8 + n + offset);
  msg.clear();
  try {
    load_model(dir / "ck");
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("has shape [805306368], the model expects [16]"), std::string::npos) << msg;
}

TEST(Checkpoint, TrainStateAndOptimizerRoundTrip) {
  testing::TempDir dir;
  CausalLM m(cfg());
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (auto& p : m->named_parameters()) params.emplace_back(p.key(), p.value());
  AdamW opt(params, {});
  lm_loss(m, torch::randint(0, 40, {2, 9}, torch::kLong)).backward();
  opt.step(0.01);
  TrainState s;
  s.step = 7;
  s.tokens = 700;
  s.data_seed = 42;
  save_checkpoint(dir / "ck", {&m, &opt, &s, {}});
  auto back = load_train_state(dir / "ck");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->step, 7);
  EXPECT_EQ(back->tokens, 700);
  EXPECT_EQ(back->data_seed, 42u);
  EXPECT_FALSE(back->done);
  AdamW opt2(params, {});
  load_optimizer(opt2, dir / "ck", 7);
  EXPECT_EQ(opt2.steps(), 7);
  for (auto& [k, v] : opt.state()) EXPECT_TRUE(torch::equal(opt2.state()[k], v)) << k;
  // A state from a newer format is refused.
  auto j = s.to_json();
  j["format_version"] = 99;
  EXPECT_THROW(TrainState::from_json(j, "state.json"), Error);
}

TEST(Checkpoint, FailedWriteKeepsOldCheckpoint) {
  testing::TempDir dir;
  CausalLM m(cfg());
  save_checkpoint(dir / "ck", {&m, nullptr, nullptr, {}});
  const auto before = read_file(dir / "ck" / "model.safetensors");
  // copying a folder as if it were a file fails midway through the write
  fs::create_directories(dir / "notafile");
  EXPECT_ANY_THROW(save_checkpoint(dir / "ck", {&m, nullptr, nullptr, {dir / "notafile"}}));
  EXPECT_EQ(read_file(dir / "ck" / "model.safetensors"), before);
}

}  // namespace
}  // namespace btx
