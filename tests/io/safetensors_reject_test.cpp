// The safetensors reader refuses corrupt or hostile files with an error naming the file and what
// is wrong: short or truncated files, lengths and offsets out of bounds, unknown dtypes, garbage
// headers, overlapping ranges, holes, relabelled dtypes, control characters, FIFOs, bad booleans.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>

#include "btx/io/safetensors.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "io/safetensors_util.h"
#include "test_util.h"

namespace btx {
namespace {

using namespace safetensors_test;  // NOLINT: the helpers of these tests

TEST(SafetensorsReject, FileShorterThanLengthPrefix) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  write_file_atomic(path, "abc");
  expect_rejected(path, "too short");
}

TEST(SafetensorsReject, TruncatedFile) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  save_safetensors(path, {{"a", torch::ones({4})}, {"b", torch::ones({4})}});
  const std::string good = read_file(path);
  write_file_atomic(path, good.substr(0, good.size() - 3));
  expect_rejected(path, "past the end");
}

TEST(SafetensorsReject, HeaderLengthBeyondFile) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  std::string bytes = raw_file("{}", "");
  bytes[0] = 100;  // claims a 100-byte header in a 10-byte file
  write_file_atomic(path, bytes);
  expect_rejected(path, "header length 100");
  bytes.replace(0, 8, std::string("\0\0\0\0\0\0\0\x7f", 8));  // ~9e18: over the 100 MB limit
  write_file_atomic(path, bytes);
  expect_rejected(path, "exceeds");
}

TEST(SafetensorsReject, OutOfBoundsOffsets) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  write_file_atomic(path, raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                   std::string(8, '\0')));
  expect_rejected(path, "past the end");
  write_file_atomic(path, raw_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})",
                                   std::string(8, '\0')));
  expect_rejected(path, "before begin");
}

TEST(SafetensorsReject, SizeMismatch) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  write_file_atomic(path, raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                                   std::string(8, '\0')));
  expect_rejected(path, "needs 12");
}

TEST(SafetensorsReject, UnknownDtype) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  write_file_atomic(path, raw_file(R"({"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})",
                                   std::string(2, '\0')));
  expect_rejected(path, "unknown dtype 'F8_E4M3'");
}

TEST(SafetensorsReject, GarbageHeader) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  write_file_atomic(path, raw_file("\x01\xff garbage {", "data"));
  expect_rejected(path, "not valid JSON");
  write_file_atomic(path, raw_file("[1, 2]", ""));
  expect_rejected(path, "not an object");
  // 200k nested arrays: must be rejected before parsing, not overflow the stack.
  write_file_atomic(path, raw_file(std::string(200000, '[') + std::string(200000, ']'), ""));
  expect_rejected(path, "header nested 200000 levels deep; at most 64");
}

TEST(SafetensorsReject, BadEntryFields) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"a":[1]})", "not an object"},
      {R"({"a":{"shape":[1],"data_offsets":[0,1]}})", "\"dtype\""},
      {R"({"a":{"dtype":8,"shape":[1],"data_offsets":[0,1]}})", "\"dtype\""},
      {R"({"a":{"dtype":"U8","data_offsets":[0,1]}})", "\"shape\""},
      {R"({"a":{"dtype":"U8","shape":"1","data_offsets":[0,1]}})", "\"shape\""},
      {R"({"a":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}})", "not an integer"},
      {R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", "negative shape"},
      {R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})",
       "overflows"},
      {R"({"a":{"dtype":"I64","shape":[4611686018427387904],"data_offsets":[0,0]}})", "overflows"},
      {R"({"a":{"dtype":"U8","shape":[1]}})", "data_offsets"},
      {R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "data_offsets"},
      {R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}})", "non-negative"},
      {R"({"a":{"dtype":"U8","shape":[1],"data_offsets":["0","1"]}})", "non-negative"},
      {R"({"__metadata__":{"k":1}})", "metadata \"k\""},
      {R"({"__metadata__":["k"]})", "__metadata__"},
  };
  for (const auto& [header, needle] : cases) {
    SCOPED_TRACE(header);
    write_file_atomic(path, raw_file(header, std::string(8, '\0')));
    expect_rejected(path, needle);
  }
}

TEST(SafetensorsReject, OverlappingRanges) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  write_file_atomic(path, raw_file(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                   R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                                   std::string(8, '\0')));
  expect_rejected(path, "overlap");
}

// The format's rule (as the reference implementation checks it): tensors tile the data buffer.
TEST(SafetensorsReject, HoleOrRemainderInTheDataBuffer) {
  testing::TempDir dir;
  const auto hole = dir / "hole.safetensors";
  write_file_atomic(hole, raw_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},)"
                                   R"("b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
                                   std::string("\x01\x02\xff\xff\x03\x04", 6)));
  expect_rejected(hole, "bytes [2, 4) of the data buffer belong to no tensor");
  const auto rest = dir / "rest.safetensors";
  write_file_atomic(rest, raw_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
                                   std::string("\x01\x02\x03", 3)));
  expect_rejected(rest, "the data buffer is 3 bytes but its tensors cover 2");
}

// A header length one byte short: the JSON still parses (the padding lost a space), and every
// tensor would be read one byte off. Found by an attacker; refused by the tiling rule.
TEST(SafetensorsReject, HeaderLengthOneByteShortOrLong) {
  testing::TempDir dir;
  const auto good = dir / "good.safetensors";
  save_safetensors(good, {{"w", torch::arange(6, torch::kFloat32)}});
  const std::string bytes = read_file(good);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  ASSERT_EQ(bytes[8 + n - 1], ' ');  // btx pads its header with spaces
  for (const int delta : {-1, +1}) {
    std::string b = bytes;
    const uint64_t m = n + delta;
    std::memcpy(b.data(), &m, 8);
    const auto path = dir / fmt::format("off{}.safetensors", delta);
    write_file_atomic(path, b);
    EXPECT_THROW(load_safetensors(path), Error) << delta;
    EXPECT_NE(error_of([&] { load_safetensors(path); }).find(path.string()), std::string::npos);
  }
}

// A dtype relabelled over the same bytes (F32 data called I32, or F16 with offsets kept) loads
// as a file, so the weight loader refuses integer weights (tested in checkpoint_test); F16 with
// the F32 offsets fails the size check.
TEST(SafetensorsReject, RelabelledDtypeWithTheOldOffsets) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  write_file_atomic(path, raw_file(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})",
                                   std::string(8, '\0')));
  expect_rejected(path, "data_offsets span 8 bytes but dtype F16 with 2 elements needs 4");
}

TEST(SafetensorsReject, TensorNameWithAControlCharacterStaysOneLine) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  write_file_atomic(path, raw_file(R"({"a\nb":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
                                   std::string(1, '\0')));
  expect_rejected(path, R"("a\nb" holds a control character)");
  EXPECT_EQ(error_of([&] { load_safetensors(path); }).find('\n'), std::string::npos);
}

TEST(SafetensorsReject, AFifoIsRefusedWithoutWaitingForAWriter) {
  testing::TempDir dir;
  const auto path = dir / "model.safetensors";
  ASSERT_EQ(::mkfifo(path.c_str(), 0644), 0);
  // Opening a FIFO for reading blocks until a writer comes: the reader must not open it so.
  expect_rejected(path, "not a regular file");
  EXPECT_NE(error_of([&] { read_file(path); }).find("a FIFO"), std::string::npos);
}

TEST(SafetensorsReject, BoolByteOtherThanZeroOrOne) {
  testing::TempDir dir;
  const auto path = dir / "x.safetensors";
  write_file_atomic(path, raw_file(R"({"a":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})",
                                   std::string("\x01\x02", 2)));
  const std::string msg = error_of([&] { load_safetensors(path); });
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("not 0 or 1"), std::string::npos) << msg;
}

TEST(SafetensorsReject, MissingFileOrFolder) {
  testing::TempDir dir;
  EXPECT_NE(error_of([&] { load_safetensors(dir / "nope"); }).find("nope"), std::string::npos);
  EXPECT_NE(error_of([&] { load_safetensors(dir.path()); }).find("not a regular file"),
            std::string::npos);
}

// --- failed saves ---

}  // namespace
}  // namespace btx
