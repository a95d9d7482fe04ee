// The GGUF writer and reader: a hand-computed Q8_0 block, the exact bytes of a small header,
// every dtype round-tripped, and corrupt or impossible files refused with the reason.
#include "btx/io/gguf.h"

#include <gtest/gtest.h>

#include <cstring>

#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "test_util.h"

namespace btx::testing {
namespace {

void write_one(const fs::path& path, const GgufMetadata& m, const std::string& name,
               const torch::Tensor& t, GgufType type) {
  save_gguf(path, m, {{name, t.sizes().vec(), type}}, [&](const std::string&) { return t; });
}

TEST(GgufTest, Q8BlockIsHandComputed) {
  TempDir dir;
  // One block of 32: max |x| = 12.7, so the scale is 0.1 and each value is round(x / 0.1),
  // halves away from zero (0.25 / 0.1 = 2.5 -> 3; -0.25 -> -3).
  std::vector<float> x(32, 0.0f);
  x[0] = 12.7f;
  x[1] = -12.7f;
  x[2] = 0.25f;
  x[3] = -0.25f;
  x[4] = 1.0f;
  const auto t = torch::tensor(x).reshape({1, 32});
  write_one(dir / "q.gguf", {}, "w", t, GgufType::kQ8_0);
  const std::string bytes = read_file(dir / "q.gguf");
  ASSERT_EQ(bytes.size() % 32, 0u);
  const std::string block = bytes.substr(bytes.size() - 64, 34);  // data: 34 bytes, padded to 64
  uint16_t scale = 0;
  std::memcpy(&scale, block.data(), 2);
  EXPECT_EQ(scale, torch::tensor({0.1f}).to(torch::kHalf).view(torch::kInt16).item<int16_t>());
  const std::vector<int8_t> expected = {127, -127, 3, -3, 10};
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(static_cast<int8_t>(block[2 + i]), expected[i]);
  for (size_t i = 5; i < 32; ++i) EXPECT_EQ(block[2 + i], 0);
  const GgufFile f = read_gguf(dir / "q.gguf");
  const float d = torch::tensor({0.1f}).to(torch::kHalf).to(torch::kFloat32).item<float>();
  EXPECT_FLOAT_EQ(f.tensors.at("w")[0][2].item<float>(), 3 * d);
  EXPECT_FLOAT_EQ(f.tensors.at("w")[0][1].item<float>(), -127 * d);
}

TEST(GgufTest, HeaderBytesAreGgufVersion3) {
  TempDir dir;
  GgufMetadata m;
  m.add_u32("a", 7);
  write_one(dir / "h.gguf", m, "t", torch::ones({2, 3}), GgufType::kF32);
  const std::string b = read_file(dir / "h.gguf");
  std::string expected = "GGUF";
  auto u32 = [&](uint32_t v) { expected.append(reinterpret_cast<const char*>(&v), 4); };
  auto u64 = [&](uint64_t v) { expected.append(reinterpret_cast<const char*>(&v), 8); };
  u32(3);  // version
  u64(1);  // tensors
  u64(1);  // keys
  u64(1);  // key length
  expected += "a";
  u32(4);  // UINT32
  u32(7);
  u64(1);  // tensor name length
  expected += "t";
  u32(2);  // dimensions, innermost first
  u64(3);
  u64(2);
  u32(0);  // F32
  u64(0);  // offset
  ASSERT_GE(b.size(), expected.size());
  EXPECT_EQ(b.substr(0, expected.size()), expected);
  EXPECT_EQ(b.size(), 96u + 32u);  // header padded to 96, 24 bytes of data padded to 32
}

TEST(GgufTest, EveryDtypeAndMetadataTypeRoundTrips) {
  TempDir dir;
  GgufMetadata m;
  m.add_string("s", "h\xC3\xA9llo");
  m.add_bool("b", true);
  m.add_f32("f", 0.5f);
  m.add_i32("i", -4);
  m.add_u64("u", 1ull << 40);
  m.add_strings("ss", {"x", "", "\xE2\x96\x81y"});
  m.add_f32s("fs", {1.5f, -2.0f});
  m.add_i32s("is", {1, 6, 3});
  EXPECT_NE(error_of([&] { m.add_u32("s", 1); }).find("GGUF metadata key s given twice"),
            std::string::npos);
  torch::manual_seed(0);
  const auto a = torch::randn({3, 64});
  const auto v = torch::randn({5});
  const std::vector<GgufTensorSpec> specs = {{"a32", {3, 64}, GgufType::kF32},
                                             {"a16", {3, 64}, GgufType::kF16},
                                             {"abf", {3, 64}, GgufType::kBF16},
                                             {"aq8", {3, 64}, GgufType::kQ8_0},
                                             {"v", {5}, GgufType::kF32}};
  save_gguf(dir / "r.gguf", m, specs, [&](const std::string& n) { return n == "v" ? v : a; });
  const GgufFile f = read_gguf(dir / "r.gguf");
  EXPECT_EQ(f.metadata["s"], "h\xC3\xA9llo");
  EXPECT_EQ(f.metadata["b"], true);
  EXPECT_EQ(f.metadata["f"], 0.5);
  EXPECT_EQ(f.metadata["i"], -4);
  EXPECT_EQ(f.metadata["u"], 1ull << 40);
  EXPECT_EQ(f.metadata["ss"], nlohmann::json({"x", "", "\xE2\x96\x81y"}));
  EXPECT_EQ(f.metadata["fs"], nlohmann::json({1.5, -2.0}));
  EXPECT_EQ(f.metadata["is"], nlohmann::json({1, 6, 3}));
  EXPECT_EQ(f.tensor_order, (std::vector<std::string>{"a32", "a16", "abf", "aq8", "v"}));
  EXPECT_TRUE(torch::equal(f.tensors.at("a32"), a));
  EXPECT_TRUE(torch::equal(f.tensors.at("v"), v));
  EXPECT_TRUE(torch::equal(f.tensors.at("a16"), a.to(torch::kHalf).to(torch::kFloat32)));
  EXPECT_TRUE(torch::equal(f.tensors.at("abf"), a.to(torch::kBFloat16).to(torch::kFloat32)));
  // Q8_0: every value within half a step of its block's scale (plus the scale's f16 rounding).
  const auto blocks = a.reshape({-1, 32});
  const auto step = blocks.abs().amax(1, true) / 127;
  const auto err = (f.tensors.at("aq8").reshape({-1, 32}) - blocks).abs();
  EXPECT_TRUE((err <= step * 0.51 + 1e-6).all().item<bool>());
}

TEST(GgufTest, ImpossibleAndCorruptFilesAreRefused) {
  TempDir dir;
  // q8_0 rows of 48 values; the file is not written.
  EXPECT_NE(error_of([&] {
              write_one(dir / "x.gguf", {}, "w", torch::ones({2, 48}), GgufType::kQ8_0);
            }).find("tensor w has rows of 48 values, which q8_0 cannot hold"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "x.gguf"));
  // A produced tensor of another shape.
  EXPECT_NE(error_of([&] {
              save_gguf(dir / "y.gguf", {}, {{"w", {2, 3}, GgufType::kF32}},
                        [](const std::string&) {
                          return torch::ones({3, 2});
                        });
            }).find("tensor w was produced with shape 3x2, expected 2x3"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "y.gguf"));
  // Truncated, wrong magic, a tensor past the end.
  write_one(dir / "ok.gguf", {}, "w", torch::ones({4, 32}), GgufType::kF32);
  const std::string good = read_file(dir / "ok.gguf");
  write_file_atomic(dir / "t.gguf", good.substr(0, 30));
  EXPECT_NE(error_of([&] { read_gguf(dir / "t.gguf"); }).find("truncated"), std::string::npos);
  write_file_atomic(dir / "m.gguf", "GGML" + good.substr(4));
  EXPECT_NE(error_of([&] { read_gguf(dir / "m.gguf"); }).find("not a GGUF file"),
            std::string::npos);
  write_file_atomic(dir / "e.gguf", good.substr(0, good.size() - 64));
  EXPECT_NE(error_of([&] { read_gguf(dir / "e.gguf"); }).find("tensor w lies past the end"),
            std::string::npos);
  // An array length that would need more bytes than the file has: no huge allocation.
  GgufMetadata m;
  m.add_i32s("is", {1});
  write_one(dir / "a.gguf", m, "w", torch::ones({1}), GgufType::kF32);
  std::string bad = read_file(dir / "a.gguf");
  const uint64_t huge = 1ull << 60;
  const size_t at = bad.find("is") + 2 + 4 + 4;  // key, ARRAY, element type, then the length
  std::memcpy(&bad[at], &huge, 8);
  write_file_atomic(dir / "a.gguf", bad);
  EXPECT_NE(error_of([&] { read_gguf(dir / "a.gguf"); }).find("truncated"), std::string::npos);
}

}  // namespace
}  // namespace btx::testing
