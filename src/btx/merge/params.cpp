#include "btx/merge/params.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "btx/util/error.h"

namespace btx {

std::optional<int64_t> parse_integer(const std::string& v) {
  size_t used = 0;
  int64_t x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (v.empty() || used != v.size()) return std::nullopt;
  return x;
}

std::optional<double> parse_real(const std::string& v) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (v.empty() || used != v.size() || !std::isfinite(x)) return std::nullopt;
  return x;
}

namespace {
std::string number(double x) {
  return fmt::format("{}", x);
}
}  // namespace

std::string MergeParam::expected() const {
  const bool has_min = std::isfinite(min), has_max = std::isfinite(max);
  std::string what;
  switch (type) {
    case ParamType::kChoice:
      return fmt::format("one of: {}", fmt::join(choices, ", "));
    case ParamType::kText:
      return "text";
    case ParamType::kInteger:
      what = "an integer";
      if (min <= static_cast<double>(std::numeric_limits<int64_t>::min())) {
        if (max >= static_cast<double>(std::numeric_limits<int64_t>::max())) return what;
        return fmt::format("{} <= {}", what, number(max));
      }
      if (max >= static_cast<double>(std::numeric_limits<int64_t>::max())) {
        return fmt::format("{} >= {}", what, number(min));
      }
      return fmt::format("{} in [{}, {}]", what, number(min), number(max));
    case ParamType::kReal:
      what = "a number";
      if (has_min && has_max) {
        return fmt::format("{} in {}{}, {}{}", what, min_open ? "(" : "[", number(min), number(max),
                           max_open ? ")" : "]");
      }
      if (has_min) return fmt::format("{} {} {}", what, min_open ? ">" : ">=", number(min));
      if (has_max) return fmt::format("{} {} {}", what, max_open ? "<" : "<=", number(max));
      return what;
  }
  return what;
}

void MergeParam::check(const std::string& value) const {
  if (value.empty()) return;
  switch (type) {
    case ParamType::kText:
      return;
    case ParamType::kChoice:
      BTX_CHECK(std::find(choices.begin(), choices.end(), value) != choices.end(),
                "--{} '{}' is not one of: {}", name, value, fmt::join(choices, ", "));
      return;
    case ParamType::kInteger: {
      const auto x = parse_integer(value);
      BTX_CHECK(x && static_cast<double>(*x) >= min && static_cast<double>(*x) <= max,
                "--{} '{}': expected {}", name, value, expected());
      return;
    }
    case ParamType::kReal: {
      const auto x = parse_real(value);
      BTX_CHECK(x && (min_open ? *x > min : *x >= min) && (max_open ? *x < max : *x <= max),
                "--{} '{}': expected {}", name, value, expected());
      return;
    }
  }
}

MergeParam integer_param(std::string name, std::string default_value, std::string help, int64_t min,
                         int64_t max) {
  MergeParam p;
  p.name = std::move(name);
  p.type = ParamType::kInteger;
  p.default_value = std::move(default_value);
  p.help = std::move(help);
  p.min = static_cast<double>(min);
  p.max = static_cast<double>(max);
  return p;
}

MergeParam real_param(std::string name, std::string default_value, std::string help, double min,
                      double max, bool min_open, bool max_open) {
  MergeParam p;
  p.name = std::move(name);
  p.type = ParamType::kReal;
  p.default_value = std::move(default_value);
  p.help = std::move(help);
  p.min = min;
  p.max = max;
  p.min_open = min_open;
  p.max_open = max_open;
  return p;
}

MergeParam choice_param(std::string name, std::string default_value,
                        std::vector<std::string> choices, std::string help) {
  MergeParam p;
  p.name = std::move(name);
  p.type = ParamType::kChoice;
  p.default_value = std::move(default_value);
  p.choices = std::move(choices);
  p.help = std::move(help);
  return p;
}

MergeParam text_param(std::string name, std::string help) {
  MergeParam p;
  p.name = std::move(name);
  p.type = ParamType::kText;
  p.help = std::move(help);
  return p;
}

}  // namespace btx
