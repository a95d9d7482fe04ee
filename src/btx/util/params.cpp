#include "btx/util/params.h"

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

std::string Param::expected() const {
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

void Param::check(const std::string& value) const {
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

Param integer_param(std::string name, std::string default_value, std::string help, int64_t min,
                    int64_t max) {
  Param p;
  p.name = std::move(name);
  p.type = ParamType::kInteger;
  p.default_value = std::move(default_value);
  p.help = std::move(help);
  p.min = static_cast<double>(min);
  p.max = static_cast<double>(max);
  return p;
}

Param real_param(std::string name, std::string default_value, std::string help, double min,
                 double max, bool min_open, bool max_open) {
  Param p;
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

Param choice_param(std::string name, std::string default_value, std::vector<std::string> choices,
                   std::string help) {
  Param p;
  p.name = std::move(name);
  p.type = ParamType::kChoice;
  p.default_value = std::move(default_value);
  p.choices = std::move(choices);
  p.help = std::move(help);
  return p;
}

Param text_param(std::string name, std::string help) {
  Param p;
  p.name = std::move(name);
  p.type = ParamType::kText;
  p.help = std::move(help);
  return p;
}

// ---- ParamValues ------------------------------------------------------------------------------

ParamValues ParamValues::resolve(const std::vector<Param>& declared,
                                 const std::map<std::string, std::string>& given) {
  for (const auto& [name, value] : given) {
    const bool known = std::any_of(declared.begin(), declared.end(),
                                   [&](const Param& p) { return p.name == name; });
    BTX_CHECK(known, "--{} is not a declared parameter", name);
  }
  ParamValues out;
  for (const auto& p : declared) {
    auto it = given.find(p.name);
    Value v;
    v.type = p.type;
    v.given = it != given.end() ? it->second : p.default_value;
    p.check(v.given);
    if (!v.given.empty() && p.type == ParamType::kInteger) v.integer = *parse_integer(v.given);
    if (!v.given.empty() && p.type == ParamType::kReal) v.real = *parse_real(v.given);
    out.values_[p.name] = std::move(v);
  }
  return out;
}

const ParamValues::Value& ParamValues::at(const std::string& name, ParamType type) const {
  auto it = values_.find(name);
  BTX_CHECK(it != values_.end(), "no parameter --{} is declared", name);
  const Value& v = it->second;
  const bool fits = v.type == type || (type == ParamType::kText && v.type == ParamType::kChoice);
  BTX_CHECK(fits, "--{} is not read as the type it was declared with", name);
  BTX_CHECK(!v.given.empty() || type == ParamType::kText, "--{} has no value", name);
  return v;
}

bool ParamValues::has(const std::string& name) const {
  auto it = values_.find(name);
  return it != values_.end() && !it->second.given.empty();
}

int64_t ParamValues::integer(const std::string& name) const {
  return at(name, ParamType::kInteger).integer;
}

double ParamValues::real(const std::string& name) const {
  return at(name, ParamType::kReal).real;
}

const std::string& ParamValues::text(const std::string& name) const {
  return at(name, ParamType::kText).given;
}

bool ParamValues::flag(const std::string& name) const {
  const std::string& v = at(name, ParamType::kChoice).given;
  BTX_CHECK(v == "yes" || v == "no", "--{} '{}' is not yes or no", name, v);
  return v == "yes";
}

const std::string& ParamValues::given(const std::string& name) const {
  auto it = values_.find(name);
  BTX_CHECK(it != values_.end(), "no parameter --{} is declared", name);
  return it->second.given;
}

std::map<std::string, std::string> ParamValues::strings() const {
  std::map<std::string, std::string> out;
  for (const auto& [name, v] : values_) out[name] = v.given;
  return out;
}

}  // namespace btx
