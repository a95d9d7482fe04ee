#include "btx/merge/slerp.h"

#include <algorithm>
#include <cmath>

#include "btx/util/error.h"

namespace btx {

torch::Tensor slerp(const torch::Tensor& a, const torch::Tensor& b, double t) {
  BTX_CHECK(a.sizes() == b.sizes(), "slerp: shapes {} and {} differ", fmt::join(a.sizes(), "x"),
            fmt::join(b.sizes(), "x"));
  BTX_CHECK(t >= 0 && t <= 1, "slerp: t {} is not in [0, 1]", t);
  const auto x = a.to(torch::kFloat64), y = b.to(torch::kFloat64);
  const double nx = x.norm().item<double>(), ny = y.norm().item<double>();
  torch::Tensor out;
  if (nx == 0 || ny == 0) {
    out = (1 - t) * x + t * y;  // no direction to rotate
  } else {
    const double cos_theta = std::clamp((x * y).sum().item<double>() / (nx * ny), -1.0, 1.0);
    const double theta = std::acos(cos_theta), sin_theta = std::sin(theta);
    if (sin_theta < 1e-6) {
      out = (1 - t) * x + t * y;  // (anti)parallel: the interpolation is the line
    } else {
      out = std::sin((1 - t) * theta) / sin_theta * x + std::sin(t * theta) / sin_theta * y;
    }
  }
  return out.to(a.scalar_type());
}

torch::Tensor slerp_all(const std::vector<torch::Tensor>& tensors) {
  BTX_CHECK(!tensors.empty(), "slerp: no tensors to fuse");
  torch::Tensor directions, mean;
  double norms = 0;
  for (const auto& t : tensors) {
    BTX_CHECK(t.sizes() == tensors.front().sizes(), "slerp: shapes {} and {} differ",
              fmt::join(tensors.front().sizes(), "x"), fmt::join(t.sizes(), "x"));
    const auto x = t.to(torch::kFloat64);
    const double n = x.norm().item<double>();
    norms += n;
    const auto unit = n > 0 ? x / n : x;
    directions = directions.defined() ? directions + unit : unit;
    mean = mean.defined() ? mean + x : x;
  }
  const double k = static_cast<double>(tensors.size());
  const double length = directions.norm().item<double>();
  const auto out = length < 1e-9 ? mean / k : directions / length * (norms / k);
  return out.to(tensors.front().scalar_type());
}

}  // namespace btx
