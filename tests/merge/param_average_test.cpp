// Weighted parameter averaging: hand-computed 2x2 cases, the invariant that N identical
// checkpoints average back to themselves bit for bit, and one error per kind of bad input, each
// naming the culprit and leaving nothing written.
#include "btx/merge/param_average.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "btx/io/safetensors.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "model_util.h"
#include "test_util.h"

namespace btx {
namespace {

using testing::error_of;

ModelConfig tiny_config() {
  return testing::small_model_config(8, 4, 8, 1, 2, 2);
}

// A checkpoint folder holding exactly `tensors` and `config`.
fs::path write_checkpoint(const fs::path& dir, const TensorMap& tensors,
                          const ModelConfig& config = tiny_config()) {
  save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
  write_file_atomic(dir / "config.json", model_config_to_json(config).dump(2));
  return dir;
}

TensorMap load_tensors(const fs::path& dir) {
  return load_safetensors(dir / "model.safetensors").tensors;
}

std::string bytes_of(const torch::Tensor& t) {
  return std::string(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
}

void expect_bitwise_equal(const TensorMap& a, const TensorMap& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_EQ(t.scalar_type(), b.at(name).scalar_type()) << name;
    EXPECT_EQ(t.sizes(), b.at(name).sizes()) << name;
    EXPECT_TRUE(bytes_of(t) == bytes_of(b.at(name))) << name;
  }
}

TEST(ParamAverage, HandComputed2x2) {
  testing::TempDir dir;
  const auto a = write_checkpoint(
      dir / "a", {{"w", torch::tensor({{1.0f, 2.0f}, {3.0f, 4.0f}})},
                  {"h", torch::tensor({{0.0, -8.0}, {1.0, 2.0}}, torch::kFloat16)}});
  const auto b = write_checkpoint(
      dir / "b", {{"w", torch::tensor({{5.0f, 6.0f}, {7.0f, 8.0f}})},
                  {"h", torch::tensor({{4.0, 8.0}, {-3.0, 2.0}}, torch::kFloat16)}});
  // 0.75 * a + 0.25 * b, by hand.
  const AverageStats stats = average_checkpoints({{a, 0.75}, {b, 0.25}}, dir / "avg");
  const TensorMap out = load_tensors(dir / "avg");
  EXPECT_TRUE(torch::equal(out.at("w"), torch::tensor({{2.0f, 3.0f}, {4.0f, 5.0f}})));
  EXPECT_TRUE(torch::equal(out.at("h"), torch::tensor({{1.0, -4.0}, {0.0, 2.0}}, torch::kFloat16)));
  EXPECT_EQ(stats.tensors, 2);
  EXPECT_EQ(stats.bytes, 4 * 4 + 4 * 2);
  EXPECT_EQ(load_model_config(dir / "avg"), tiny_config());
  // Weights are normalised by their sum: 3 : 1 is the same average.
  average_checkpoints({{a, 3.0}, {b, 1.0}}, dir / "avg31");
  expect_bitwise_equal(load_tensors(dir / "avg31"), out);
}

TEST(ParamAverage, ModelCheckpointsWithOneZeroWeight) {
  testing::TempDir dir;
  const ModelConfig c = tiny_config();
  CausalLM a(c), b(c);
  {
    torch::NoGradGuard ng;
    for (auto& p : a->parameters()) p.fill_(1.0);
    for (auto& p : b->parameters()) p.fill_(3.0);
  }
  save_checkpoint(dir / "a", {&a, nullptr, nullptr, {}});
  save_checkpoint(dir / "b", {&b, nullptr, nullptr, {}});
  // Weights 1 : 3 (normalised to 0.25 / 0.75): every parameter = 0.25 * 1 + 0.75 * 3 = 2.5.
  average_checkpoints({{dir / "a", 1.0}, {dir / "b", 3.0}}, dir / "avg");
  for (auto& [name, t] : load_tensors(dir / "avg")) {
    EXPECT_TRUE(torch::equal(t, torch::full_like(t, 2.5))) << name;
  }
  load_model(dir / "avg");  // a loadable checkpoint of the same architecture
  // All the weight on one checkpoint gives it back exactly.
  average_checkpoints({{dir / "a", 0.0}, {dir / "b", 5.0}}, dir / "only_b");
  expect_bitwise_equal(load_tensors(dir / "only_b"), load_tensors(dir / "b"));
}

TEST(ParamAverage, RandomInputsMatchTheFormula) {
  testing::TempDir dir;
  torch::manual_seed(1);
  const std::vector<double> weights = {0.3, 2.0, 0.0, 1.7};
  std::vector<WeightedCheckpoint> inputs;
  std::vector<torch::Tensor> values;
  for (size_t i = 0; i < weights.size(); ++i) {
    values.push_back(torch::randn({3, 700000}));  // spans several accumulation chunks
    inputs.push_back(
        {write_checkpoint(dir / std::to_string(i), {{"w", values.back()}}), weights[i]});
  }
  average_checkpoints(inputs, dir / "avg");
  auto expected = torch::zeros({3, 700000}, torch::kFloat64);
  for (size_t i = 0; i < weights.size(); ++i)
    expected += weights[i] / 4.0 * values[i].to(torch::kFloat64);
  const auto got = load_tensors(dir / "avg").at("w");
  EXPECT_EQ(got.scalar_type(), torch::kFloat32);
  // Within float32 rounding of the exact float64 formula.
  EXPECT_TRUE(torch::allclose(got.to(torch::kFloat64), expected, 1e-7, 1e-7));
}

TEST(ParamAverage, IdenticalCheckpointsGiveThemBackBitForBit) {
  testing::TempDir dir;
  torch::manual_seed(2);
  const auto special = torch::tensor({0.0, -0.0, 1.5, std::numeric_limits<double>::infinity(),
                                      -std::numeric_limits<double>::infinity(),
                                      std::numeric_limits<double>::quiet_NaN(), 1e-30, 1e-310});
  TensorMap tensors;
  for (auto type : {torch::kFloat64, torch::kFloat32, torch::kFloat16, torch::kBFloat16}) {
    tensors[std::string("r_") + c10::toString(type)] = torch::randn({7, 3}).to(type);
    tensors[std::string("s_") + c10::toString(type)] = special.to(type);
  }
  tensors["scalar"] = torch::tensor(0.1f);
  tensors["empty"] = torch::zeros({0, 5});
  std::vector<WeightedCheckpoint> inputs;
  for (const double w : {0.1, 1.0 / 3.0, 7.0, 0.0, 1e-9}) {
    inputs.push_back({write_checkpoint(dir / std::to_string(inputs.size()), tensors), w});
  }
  average_checkpoints(inputs, dir / "avg");
  expect_bitwise_equal(load_tensors(dir / "avg"), tensors);
  EXPECT_EQ(load_model_config(dir / "avg"), tiny_config());
}

// The float64 path (taken when inputs differ) is exact too for every element that is the same
// in all inputs, for the dtypes checkpoints hold.
TEST(ParamAverage, ElementsEqualInEveryInputComeBackExactly) {
  testing::TempDir dir;
  torch::manual_seed(3);
  for (auto type : {torch::kFloat32, torch::kFloat16, torch::kBFloat16}) {
    SCOPED_TRACE(c10::toString(type));
    // Values over a wide range, signed zeros and subnormals included.
    const auto shared = torch::cat({torch::randn({996}) * torch::exp(torch::randn({996}) * 5),
                                    torch::tensor({-0.0, 0.0, 1e-40, -1e-45})})
                            .to(type);
    std::vector<WeightedCheckpoint> inputs;
    for (int i = 0; i < 6; ++i) {
      const auto own = torch::randn({1000}).to(type);
      const fs::path d = dir / fmt::format("{}_{}", c10::toString(type), i);
      inputs.push_back({write_checkpoint(d, {{"w", torch::cat({shared, own})}}),
                        torch::rand({1}).item<double>() * 10});
    }
    const fs::path out = dir / fmt::format("avg_{}", c10::toString(type));
    average_checkpoints(inputs, out);
    const auto got = load_tensors(out).at("w").slice(0, 0, 1000).contiguous();
    EXPECT_TRUE(bytes_of(got) == bytes_of(shared));
  }
}

// A tensor longer than one accumulation slice, with slices that are the same in every input
// (given back as is) next to slices that differ (averaged).
TEST(ParamAverage, SameAndDifferentSlicesOfALongTensor) {
  testing::TempDir dir;
  torch::manual_seed(4);
  const int64_t n = 1000000;
  const auto base = torch::randn({n}, torch::kFloat64);
  std::vector<WeightedCheckpoint> inputs;
  std::vector<torch::Tensor> values;
  for (int i = 0; i < 3; ++i) {
    auto v = base.clone();
    v.slice(0, 300000, 310000).add_(torch::randn({10000}, torch::kFloat64));
    values.push_back(v);
    inputs.push_back(
        {write_checkpoint(dir / std::to_string(i), {{"w", v.reshape({1000, 1000})}}), 1.0 + i});
  }
  average_checkpoints(inputs, dir / "avg");
  const auto got = load_tensors(dir / "avg").at("w").reshape({n});
  const auto same = torch::cat({got.slice(0, 0, 262144), got.slice(0, 524288, n)});
  EXPECT_TRUE(bytes_of(same.contiguous()) ==
              bytes_of(torch::cat({base.slice(0, 0, 262144), base.slice(0, 524288, n)})));
  const auto expected = (values[0] + 2 * values[1] + 3 * values[2]) / 6;
  EXPECT_TRUE(torch::allclose(got, expected, 1e-12, 1e-12));
  EXPECT_FALSE(torch::equal(got.slice(0, 300000, 310000), base.slice(0, 300000, 310000)));
}

// --- bad input: each an error naming the culprit, with nothing written ---

struct BadInputCase {
  std::string what;
  std::vector<WeightedCheckpoint> inputs;
  std::vector<std::string> needles;  // all must appear in the message
};

TEST(ParamAverage, BadInputsAreErrorsNamingTheCulprit) {
  testing::TempDir dir;
  const auto w = torch::ones({2, 2});
  const auto a = write_checkpoint(dir / "ckpt_a", {{"w", w}, {"v", torch::ones({3})}});
  const auto b = write_checkpoint(dir / "ckpt_b", {{"w", w}, {"v", torch::ones({3})}});
  ModelConfig wide = tiny_config();
  wide.hidden_size = 8;
  const auto other_config =
      write_checkpoint(dir / "ckpt_wide", {{"w", w}, {"v", torch::ones({3})}}, wide);
  const auto fewer = write_checkpoint(dir / "ckpt_fewer", {{"w", w}});
  const auto more =
      write_checkpoint(dir / "ckpt_more", {{"w", w}, {"v", torch::ones({3})}, {"extra", w}});
  const auto shape =
      write_checkpoint(dir / "ckpt_shape", {{"w", torch::ones({2, 3})}, {"v", torch::ones({3})}});
  const auto dtype =
      write_checkpoint(dir / "ckpt_dtype", {{"w", w.to(torch::kFloat16)}, {"v", torch::ones({3})}});
  const auto ints =
      write_checkpoint(dir / "ckpt_ints", {{"w", w}, {"v", torch::ones({3}, torch::kInt64)}});
  fs::create_directories(dir / "no_model");
  write_file_atomic(dir / "no_model" / "config.json", model_config_to_json(tiny_config()).dump());
  fs::create_directories(dir / "no_config");
  save_safetensors(dir / "no_config" / "model.safetensors", {{"w", w}});
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();

  const std::vector<BadInputCase> cases = {
      {"no inputs", {}, {"no checkpoints", "out"}},
      {"missing folder", {{a, 1}, {dir / "nowhere", 1}}, {"nowhere", "does not exist"}},
      {"missing model.safetensors",
       {{a, 1}, {dir / "no_model", 1}},
       {(dir / "no_model").string(), "model.safetensors"}},
      {"missing config.json", {{dir / "no_config", 1}}, {"no_config", "config.json"}},
      {"negative weight", {{a, 1}, {b, -0.5}}, {b.string(), "-0.5", "negative"}},
      {"NaN weight", {{a, nan}, {b, 1}}, {a.string(), "nan"}},
      {"infinite weight", {{a, 1}, {b, inf}}, {b.string(), "inf"}},
      {"all weights zero", {{a, 0}, {b, 0}}, {"zero", a.string(), b.string()}},
      {"different configs",
       {{a, 1}, {other_config, 1}},
       {a.string(), other_config.string(), "hidden_size 4 vs 8"}},
      {"tensor missing from the second", {{a, 1}, {fewer, 1}}, {"'v'", a.string(), fewer.string()}},
      {"tensor missing from the first",
       {{a, 1}, {more, 1}},
       {"'extra'", a.string(), more.string()}},
      {"shape differs",
       {{a, 1}, {shape, 1}},
       {"'w'", "[2, 2]", "[2, 3]", a.string(), shape.string()}},
      {"dtype differs", {{a, 1}, {dtype, 1}}, {"'w'", "F32", "F16", a.string(), dtype.string()}},
      {"integer tensor", {{ints, 1}, {ints, 1}}, {"'v'", "I64", ints.string()}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const fs::path out = dir / "out";
    const std::string msg = error_of([&] { average_checkpoints(c.inputs, out); });
    EXPECT_FALSE(msg.empty()) << "no btx::Error";
    for (const auto& needle : c.needles) {
      EXPECT_NE(msg.find(needle), std::string::npos) << "wanted '" << needle << "' in: " << msg;
    }
    EXPECT_FALSE(fs::exists(out)) << "something was written";
  }
}

TEST(ParamAverage, ErrorLeavesAnExistingOutputUntouched) {
  testing::TempDir dir;
  const auto a = write_checkpoint(dir / "a", {{"w", torch::ones({2})}});
  const auto b = write_checkpoint(dir / "b", {{"w", torch::ones({3})}});
  const auto out = write_checkpoint(dir / "out", {{"w", torch::zeros({2})}});
  const std::string before = read_file(out / "model.safetensors");
  EXPECT_THROW(average_checkpoints({{a, 1}, {b, 1}}, out), Error);
  EXPECT_EQ(read_file(out / "model.safetensors"), before);
  int files = 0;
  for (const auto& e : fs::directory_iterator(out)) files += 1 + 0 * e.is_regular_file();
  EXPECT_EQ(files, 2);
}

}  // namespace
}  // namespace btx
