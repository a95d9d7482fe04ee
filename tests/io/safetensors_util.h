// Helpers of the safetensors tests: raw files built by hand and the checks of a refusal.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "btx/io/safetensors.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx::safetensors_test {

inline std::string bytes_of(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

inline void expect_bitwise_equal(const torch::Tensor& a, const torch::Tensor& b,
                                 const std::string& what) {
  EXPECT_EQ(a.scalar_type(), b.scalar_type()) << what;
  EXPECT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_TRUE(bytes_of(a) == bytes_of(b)) << what;
}

// A raw file: 8-byte length of `header`, `header`, then `data`.
inline std::string raw_file(const std::string& header, const std::string& data) {
  const uint64_t n = header.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + header + data;
}

// The message of the btx::Error that `f` throws ("" and a test failure if it throws none).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a btx::Error";
  return "";
}

// Both the full reader and the header reader reject `path`, naming it and `needle`.
inline void expect_rejected(const fs::path& path, const std::string& needle) {
  EXPECT_THROW(load_safetensors(path), Error);
  for (const std::string& msg : {error_of([&] { load_safetensors(path); }),
                                 error_of([&] { read_safetensors_header(path); })}) {
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "wanted '" << needle << "' in: " << msg;
  }
}

}  // namespace btx::safetensors_test
