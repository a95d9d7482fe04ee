// Device names: what parses, and the errors for what does not (on a machine without CUDA, the
// error that says how to get a GPU build).
#include "btx/util/device.h"

#include <gtest/gtest.h>

#include "btx/util/error.h"
#include "test_util.h"

namespace btx {
namespace {

std::string error_of(const std::string& spec) {
  return testing::error_of([&] { parse_device(spec, "--device"); });
}

TEST(Device, ParsesCpuAndRefusesWhatIsNotADevice) {
  EXPECT_TRUE(parse_device("cpu", "--device").is_cpu());
  EXPECT_EQ(error_of("gpu"), "--device 'gpu' is not a device: use cpu, cuda or cuda:N");
  EXPECT_EQ(error_of("CPU"), "--device 'CPU' is not a device: use cpu, cuda or cuda:N");
  EXPECT_NE(error_of("cuda:x").find("the GPU index after 'cuda:' must be a number"),
            std::string::npos);
  EXPECT_NE(error_of("cuda:").find("must be a number"), std::string::npos);
  if (!torch::cuda::is_available()) {
    for (const char* spec : {"cuda", "cuda:0"}) {
      const std::string e = error_of(spec);
      EXPECT_NE(e.find("no GPU is usable here"), std::string::npos) << e;
      EXPECT_NE(e.find("scripts/gpu_build.sh"), std::string::npos) << e;
    }
  } else {
    EXPECT_EQ(parse_device("cuda", "--device"), torch::Device(torch::kCUDA, 0));
    const auto n = torch::cuda::device_count();
    EXPECT_NE(error_of("cuda:" + std::to_string(n)).find("GPU(s) are visible"), std::string::npos);
  }
}

TEST(Device, DefaultIsTheCpuAndFollowsSet) {
  EXPECT_TRUE(default_device().is_cpu());
  set_default_device(torch::kCPU);
  EXPECT_TRUE(default_device().is_cpu());
  torch::nn::Linear lin(2, 3);
  EXPECT_TRUE(device_of(*lin).is_cpu());
}

}  // namespace
}  // namespace btx
