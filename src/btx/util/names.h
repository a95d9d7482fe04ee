// The names of an enum, in one table per enum (as model/router.h keeps its router kinds): the
// enum's header declares `const std::vector<Named<E>>& names(E)`, found by argument-dependent
// lookup, whose rows give each value the one string that files, configs and messages use. Every
// other file converts through these functions and compares enum values, never strings.
#pragma once

#include <fmt/format.h>

#include <optional>
#include <string>
#include <vector>

#include "btx/util/error.h"

namespace btx {

template <typename E>
struct Named {
  E value;
  const char* name;
};

// The name of `v` in its table.
template <typename E>
const char* name_of(E v) {
  for (const auto& n : names(E{})) {
    if (n.value == v) return n.name;
  }
  fail("enum value {} has no name in its table", static_cast<int>(v));
}

// The value named `name`; nullopt when no row has it.
template <typename E>
std::optional<E> find_named(const std::string& name) {
  for (const auto& n : names(E{})) {
    if (name == n.name) return n.value;
  }
  return std::nullopt;
}

// Every name of the table, in order: "all, ffn, flexolmo".
template <typename E>
std::string name_list(const std::vector<E>& values = {}, const char* separator = ", ") {
  std::vector<std::string> out;
  if (values.empty()) {
    for (const auto& n : names(E{})) out.push_back(n.name);
  } else {
    for (E v : values) out.push_back(name_of(v));
  }
  return fmt::format("{}", fmt::join(out, separator));
}

// Every name of the table as alternatives for a message: "a, b or c" (`quote`: "\"a\", \"b\" or
// \"c\"").
template <typename E>
std::string name_alternatives(bool quote = false) {
  std::string out;
  const auto& all = names(E{});
  for (size_t i = 0; i < all.size(); ++i) {
    out += fmt::format("{}{}",
                       i == 0                ? ""
                       : i + 1 == all.size() ? " or "
                                             : ", ",
                       quote ? fmt::format("\"{}\"", all[i].name) : std::string(all[i].name));
  }
  return out;
}

// The value named `name`, or the error "WHERE: 'NAME' is not one of a, b, c".
template <typename E>
E parse_named(const std::string& name, const std::string& where) {
  const auto v = find_named<E>(name);
  BTX_CHECK(v.has_value(), "{}: '{}' is not one of {}", where, name, name_list<E>());
  return *v;
}

}  // namespace btx
