// Checkpoints: save -> load gives identical logits; the wrong architecture or a damaged file is
// a clear error; train state and optimizer state round-trip.
#include "btx/train/checkpoint.h"

#include <gtest/gtest.h>

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
