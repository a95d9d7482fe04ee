// Tests for the safetensors reader/writer: bitwise round trips for every dtype, the exact bytes
// of a hand-built file, and rejection of corrupt or hostile files with an error naming the file.
// Interop with the Python library is not tested here (no Python safetensors on the build host).
#include "btx/io/safetensors.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <functional>

#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "io/safetensors_util.h"
#include "test_util.h"

namespace btx {
namespace {

using namespace safetensors_test;  // NOLINT: the helpers of these tests

TEST(Safetensors, RoundTripEveryDtypeBitwise) {
  testing::TempDir dir;
  torch::manual_seed(0);
  TensorMap in;
  auto special = torch::tensor({0.0, -0.0, 1.5, std::numeric_limits<double>::infinity(),
                                -std::numeric_limits<double>::infinity(),
                                std::numeric_limits<double>::quiet_NaN(), 1e-30, -65504.0});
  for (auto type : {torch::kFloat64, torch::kFloat32, torch::kFloat16, torch::kBFloat16}) {
    in[std::string("f_") + c10::toString(type)] = torch::randn({3, 5}).to(type);
    in[std::string("special_") + c10::toString(type)] = special.to(type);
  }
  for (auto type : {torch::kInt64, torch::kInt32, torch::kInt16, torch::kInt8}) {
    in[std::string("i_") + c10::toString(type)] = torch::randint(-128, 128, {2, 3, 4}).to(type);
  }
  in["i_big"] =
      torch::tensor({std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()});
  in["u8"] = torch::randint(0, 256, {7}).to(torch::kUInt8);
  in["bool"] = torch::randint(0, 2, {4, 4}).to(torch::kBool);
  in["scalar"] = torch::tensor(3.25f);  // 0-dim
  in["empty"] = torch::zeros({0, 3}, torch::kBFloat16);

  const auto path = dir / "x.safetensors";
  save_safetensors(path, in);
  const SafetensorsFile out = load_safetensors(path);
  EXPECT_TRUE(out.metadata.empty());
  ASSERT_EQ(out.tensors.size(), in.size());
  for (const auto& [name, t] : in) {
    ASSERT_TRUE(out.tensors.count(name)) << name;
    expect_bitwise_equal(t, out.tensors.at(name), name);
  }
  EXPECT_EQ(out.tensors.at("scalar").dim(), 0);

  const auto info = read_safetensors_header(path);
  EXPECT_EQ(info.at("bool").dtype, "BOOL");
  EXPECT_EQ(info.at("f_BFloat16").dtype, "BF16");
  EXPECT_EQ(info.at("empty").shape, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(info.at("empty").begin, info.at("empty").end);
  EXPECT_TRUE(info.at("scalar").shape.empty());
  EXPECT_EQ(info.at("scalar").end - info.at("scalar").begin, 4u);
}

TEST(Safetensors, MetadataRoundTrip) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"note", "quotes \" and\nnewlines, ünïcödé"}, {"empty", ""}};
  save_safetensors(path, {{"w", torch::ones({2})}}, meta);
  EXPECT_EQ(load_safetensors(path).metadata, meta);

  save_safetensors(path, {{"w", torch::ones({2})}});  // no metadata: no "__metadata__" key
  EXPECT_EQ(read_file(path).find("__metadata__"), std::string::npos);
  EXPECT_TRUE(load_safetensors(path).metadata.empty());
}

TEST(Safetensors, EmptyMapRoundTrip) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  save_safetensors(path, {});
  EXPECT_EQ(read_file(path), raw_file("{}      ", ""));
  EXPECT_TRUE(load_safetensors(path).tensors.empty());
}

TEST(Safetensors, WritesExactBytes) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  // Inserted out of order: the file must list and lay out tensors sorted by name.
  save_safetensors(path,
                   {{"b", torch::tensor({1, -2}, torch::kInt8)}, {"a", torch::tensor({1.0f})}},
                   {{"k", "v"}});
  const std::string header = R"({"__metadata__":{"k":"v"},)"
                             R"("a":{"data_offsets":[0,4],"dtype":"F32","shape":[1]},)"
                             R"("b":{"data_offsets":[4,6],"dtype":"I8","shape":[2]}})"
                             "     ";  // 131 bytes of JSON + 5 spaces = 136, a multiple of 8
  const std::string expected = std::string("\x88\0\0\0\0\0\0\0", 8) + header +
                               std::string("\x00\x00\x80\x3f", 4) +  // 1.0f little-endian
                               std::string("\x01\xfe", 2);           // int8 1, -2
  const std::string got = read_file(path);
  EXPECT_EQ(got.size(), 150u);
  EXPECT_EQ(got, expected);
}

TEST(Safetensors, NonContiguousInputSavedCorrectly) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  const auto base = torch::arange(12, torch::kFloat32).reshape({3, 4});
  TensorMap in = {
      {"transposed", base.t()},
      {"strided", base.index({torch::indexing::Slice(), torch::indexing::Slice(0, 4, 2)})},
      {"expanded", torch::tensor({1, 2, 3}, torch::kInt32).expand({2, 3})},
      {"negview", base._neg_view()}};
  ASSERT_FALSE(in["transposed"].is_contiguous());
  save_safetensors(path, in);
  const auto out = load_safetensors(path).tensors;
  for (const auto& [name, t] : in) {
    EXPECT_TRUE(torch::equal(out.at(name), t)) << name;
    EXPECT_EQ(out.at(name).sizes(), t.sizes()) << name;
  }
  EXPECT_TRUE(torch::equal(out.at("transposed")[0], torch::tensor({0.0f, 4.0f, 8.0f})));
  EXPECT_TRUE(torch::equal(out.at("negview"), -base));
}

TEST(Safetensors, ReadsUnpaddedHeaderAndTensorsStoredOutOfNameOrder) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  // An odd header length (no padding), and 'b' stored before 'a' in the buffer.
  write_file_atomic(path, raw_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
                                   R"("b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
                                   std::string("\x01\x02\x03\x04", 4)));
  const auto out = load_safetensors(path).tensors;
  EXPECT_TRUE(torch::equal(out.at("a"), torch::tensor({3, 4}, torch::kUInt8)));
  EXPECT_TRUE(torch::equal(out.at("b"), torch::tensor({1, 2}, torch::kUInt8)));
}

// --- one tensor at a time ---

TEST(SafetensorsReader, ReadsOneTensorOfMany) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  TensorMap in;
  for (int i = 0; i < 20; ++i) in[fmt::format("t{:02}", i)] = torch::full({i + 1, 3}, i * 1.5);
  in["flags"] = torch::tensor({true, false});
  save_safetensors(path, in, {{"k", "v"}});
  // Corrupt 'flags' (BOOL byte 7): a reader that only reads what it is asked for does not care.
  std::string bytes = read_file(path);
  const auto info = read_safetensors_header(path).at("flags");
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes.data(), 8);
  bytes[8 + header_bytes + info.begin] = 7;
  write_file_atomic(path, bytes);

  const SafetensorsReader reader(path);
  EXPECT_EQ(reader.path(), path);
  EXPECT_EQ(reader.tensors().size(), in.size());
  EXPECT_EQ(reader.metadata(), (std::map<std::string, std::string>{{"k", "v"}}));
  EXPECT_TRUE(reader.contains("t07"));
  EXPECT_FALSE(reader.contains("t20"));
  EXPECT_EQ(reader.tensors().at("t07").shape, (std::vector<int64_t>{8, 3}));
  expect_bitwise_equal(reader.read("t07"), in.at("t07"), "t07");
  expect_bitwise_equal(reader.read("t19"), in.at("t19"), "t19");
  expect_bitwise_equal(reader.read("t07"), in.at("t07"), "t07 again");
  const std::string msg = error_of([&] { reader.read("flags"); });
  EXPECT_NE(msg.find("not 0 or 1"), std::string::npos) << msg;
}

TEST(SafetensorsReader, UnknownNameNamesFileAndTensor) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  save_safetensors(path, {{"w", torch::ones({2})}});
  const SafetensorsReader reader(path);
  const std::string msg = error_of([&] { reader.read("model.nope"); });
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("'model.nope'"), std::string::npos) << msg;
  EXPECT_THROW(SafetensorsReader(dir / "missing.safetensors"), Error);
}

TEST(SafetensorsReader, ReadsARangeIntoABuffer) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  const auto w = torch::arange(24, torch::kFloat32).reshape({4, 6});
  save_safetensors(path, {{"w", w}, {"flags", torch::tensor({true, false, true})}});
  const SafetensorsReader reader(path);
  auto buf = torch::full({5}, -1.0f);
  reader.read_range("w", 7, buf);  // row-major elements 7..11
  EXPECT_TRUE(torch::equal(buf, torch::arange(7, 12, torch::kFloat32)));
  reader.read_range("w", 19, buf);  // the last 5
  EXPECT_TRUE(torch::equal(buf, torch::arange(19, 24, torch::kFloat32)));
  auto flags = torch::empty({2}, torch::kBool);
  reader.read_range("flags", 1, flags);
  EXPECT_TRUE(torch::equal(flags, torch::tensor({false, true})));

  for (const auto& [call, needle] : std::vector<std::pair<std::function<void()>, std::string>>{
           {[&] { reader.read_range("w", 20, buf); }, "[20, 25) are outside tensor 'w'"},
           {[&] { reader.read_range("w", -1, buf); }, "outside tensor 'w'"},
           {[&] { reader.read_range("w", 0, torch::empty({5}, torch::kFloat64)); }, "dtype"},
           {[&] {
              reader.read_range("w", 0, torch::empty({4, 2}).t());
            },
            "contiguous"},
           {[&] { reader.read_range("nope", 0, buf); }, "'nope'"},
       }) {
    const std::string msg = error_of(call);
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "wanted '" << needle << "' in: " << msg;
  }
}

TEST(SafetensorsStreaming, SameBytesAsSaveSafetensors) {
  testing::TempDir dir;
  torch::manual_seed(0);
  const TensorMap in = {{"b", torch::randn({4, 5}).t()},  // non-contiguous
                        {"a", torch::randint(0, 9, {3}, torch::kInt64)},
                        {"c", torch::randn({2, 2}).to(torch::kBFloat16)},
                        {"e", torch::zeros({0, 4})},
                        {"s", torch::tensor(2.5)}};
  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  save_safetensors(dir / "whole.safetensors", in, meta);

  TensorLayout layout;
  for (const auto& [name, t] : in) layout[name] = {t.scalar_type(), t.sizes().vec()};
  std::vector<std::string> order;
  save_safetensors_streaming(dir / "streamed.safetensors", layout, meta,
                             [&](const std::string& name) {
                               order.push_back(name);
                               return in.at(name);
                             });
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "c", "e", "s"}));
  EXPECT_EQ(read_file(dir / "streamed.safetensors"), read_file(dir / "whole.safetensors"));
  for (const auto& [name, t] : load_safetensors(dir / "streamed.safetensors").tensors) {
    expect_bitwise_equal(t, in.at(name).contiguous(), name);
  }
}

TEST(SafetensorsStreaming, FailingProducerLeavesNoFileAndOldFileUntouched) {
  testing::TempDir dir;
  const TensorLayout layout = {{"a", {torch::kFloat32, {1000}}}, {"b", {torch::kFloat32, {2}}}};
  auto produce = [](const std::string& name) -> torch::Tensor {
    if (name == "b") throw Error("producer gave up on 'b'");
    return torch::ones({1000});
  };
  // No file before: none after, and no temporary either.
  EXPECT_EQ(
      error_of([&] { save_safetensors_streaming(dir / "new.safetensors", layout, {}, produce); }),
      "producer gave up on 'b'");
  EXPECT_TRUE(fs::is_empty(dir.path()));

  // A good file before: unchanged after. Non-btx exceptions become a btx::Error naming the file.
  const auto good = dir / "good.safetensors";
  save_safetensors(good, {{"w", torch::arange(5)}});
  const std::string before = read_file(good);
  EXPECT_THROW(save_safetensors_streaming(good, layout, {}, produce), Error);
  const std::string msg = error_of([&] {
    save_safetensors_streaming(good, layout, {}, [](const std::string&) -> torch::Tensor {
      throw std::runtime_error("disk on fire");
    });
  });
  EXPECT_NE(msg.find(good.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("disk on fire"), std::string::npos) << msg;
  EXPECT_EQ(read_file(good), before);
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += 1 + 0 * e.is_regular_file();
  EXPECT_EQ(files, 1) << "temporary file left behind";
}

TEST(SafetensorsStreaming, ProducedTensorMustMatchLayout) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  const TensorLayout layout = {{"w", {torch::kFloat32, {2, 3}}}};
  const std::vector<std::pair<torch::Tensor, std::string>> cases = {
      {torch::ones({3, 2}), "F32 [3, 2]"},
      {torch::ones({2, 3}, torch::kFloat64), "F64 [2, 3]"},
      {torch::ones({6}), "F32 [6]"},
      {torch::Tensor(), "undefined"},
  };
  for (const auto& [produced, needle] : cases) {
    const std::string msg = error_of([&, &t = produced] {
      save_safetensors_streaming(path, layout, {}, [&](const std::string&) { return t; });
    });
    EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "wanted '" << needle << "' in: " << msg;
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
  // Invalid layouts are rejected before any file is created.
  auto never = [](const std::string&) -> torch::Tensor { throw Error("must not be called"); };
  EXPECT_NE(error_of([&] {
              save_safetensors_streaming(path, {{"w", {torch::kFloat32, {-1}}}}, {}, never);
            }).find("negative dimension"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              save_safetensors_streaming(path, {{"w", {torch::kComplexFloat, {1}}}}, {}, never);
            }).find("unsupported dtype"),
            std::string::npos);
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

// --- rejection of corrupt and hostile files ---

TEST(SafetensorsSave, FailedSaveLeavesGoodFileUnchanged) {
  testing::TempDir dir;
  const auto good = dir / "good.safetensors";
  save_safetensors(good, {{"w", torch::arange(5)}});
  const std::string before = read_file(good);

  // The parent of the target is a file: cannot create it.
  const auto bad_target = good / "x.safetensors";
  EXPECT_THROW(save_safetensors(bad_target, {{"w", torch::ones({2})}}), Error);
  EXPECT_NE(error_of([&] { save_safetensors(bad_target, {}); }).find(bad_target.string()),
            std::string::npos);

  // Unsupported dtype, reserved name, non-UTF-8 metadata: rejected before touching the file.
  EXPECT_THROW(save_safetensors(good, {{"c", torch::ones({2}, torch::kComplexFloat)}}), Error);
  EXPECT_THROW(save_safetensors(good, {{"__metadata__", torch::ones({2})}}), Error);
  EXPECT_THROW(save_safetensors(good, {{"w", torch::ones({2})}}, {{"k", "\xff\xfe"}}), Error);
  EXPECT_THROW(save_safetensors(good, {{"u", torch::Tensor()}}), Error);

  EXPECT_EQ(read_file(good), before);
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += 1 + 0 * e.is_regular_file();
  EXPECT_EQ(files, 1) << "temporary file left behind";
}

}  // namespace
}  // namespace btx
