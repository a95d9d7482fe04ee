// Typed reading of one TOML table into a config struct, with the checks every config needs:
// wrong types and unknown keys are errors naming the file and the dotted key. Reading is
// declarative: each struct lists its fields once in a `visit` function used for both reading
// and writing (see model/config.h), so the resolved config always shows every default.
#pragma once

#include <fmt/format.h>
#include <toml++/toml.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "btx/util/names.h"

namespace btx {

// Reads fields from a table; call finish() to reject keys nobody asked for.
class TomlReader {
 public:
  TomlReader(const toml::table* table, std::string file, std::string prefix);

  void field(const char* key, int64_t& v);
  void field(const char* key, int& v);
  void field(const char* key, uint64_t& v);
  void field(const char* key, double& v);
  void field(const char* key, float& v);
  void field(const char* key, bool& v);
  void field(const char* key, std::string& v);
  void field(const char* key, std::vector<std::string>& v);
  void field(const char* key, std::map<std::string, double>& v);
  // An enum with a name table (util/names.h), written as its name; another name is the error
  // "FILE KEY: 'NAME' is not one of a, b, c".
  template <typename E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
  void field(const char* key, E& v) {
    std::string name = name_of(v);
    field(key, name);
    v = parse_named<E>(name, dotted(key));
  }
  template <typename E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
  void field(const char* key, std::vector<E>& v) {
    std::vector<std::string> given;
    for (E x : v) given.push_back(name_of(x));
    field(key, given);
    v.clear();
    for (size_t i = 0; i < given.size(); ++i) {
      v.push_back(parse_named<E>(given[i], fmt::format("{}[{}]", dotted(key), i)));
    }
  }

  // A nested table, read by a child reader (absent: an empty one, so defaults apply).
  TomlReader child(const char* key);
  // An array of tables ([[key]]), each read into a T by T::visit, unknown keys rejected.
  template <typename T>
  void table_array(const char* key, std::vector<T>& out) {
    const toml::node* n = get(key);
    if (!n) return;
    const toml::array* arr = n->as_array();
    if (!arr || (!arr->empty() && !arr->is_array_of_tables())) not_table_array(key);
    out.clear();
    for (size_t i = 0; i < arr->size(); ++i) {
      TomlReader r(arr->get(i)->as_table(), file_,
                   fmt::format("{}{}[{}]", prefix_.empty() ? "" : prefix_ + ".", key, i));
      T item;
      item.visit(r);
      r.finish();
      out.push_back(std::move(item));
    }
  }
  // Throws btx::Error for every key of the table that no field() or child() asked for.
  void finish() const;

  const std::string& file() const { return file_; }

 private:
  const toml::node* get(const char* key);
  std::string where(const char* key) const;
  std::string dotted(const char* key) const;  // "FILE prefix.key"
  [[noreturn]] void not_table_array(const char* key) const;
  const toml::table* table_;
  std::string file_, prefix_;
  std::set<std::string> seen_;
};

template <typename T>
struct is_enum_vector : std::false_type {};
template <typename E>
struct is_enum_vector<std::vector<E>> : std::is_enum<E> {};

// Writes fields into a table in declaration order (for the resolved config.toml).
class TomlWriter {
 public:
  explicit TomlWriter(toml::table* table) : table_(table) {}
  template <typename T>
  void field(const char* key, const T& v) {
    if constexpr (std::is_enum_v<T>) {
      table_->insert_or_assign(key, std::string(name_of(v)));
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      toml::array a;
      for (auto& s : v) a.push_back(s);
      table_->insert_or_assign(key, std::move(a));
    } else if constexpr (is_enum_vector<T>::value) {
      toml::array a;
      for (auto x : v) a.push_back(std::string(name_of(x)));
      table_->insert_or_assign(key, std::move(a));
    } else if constexpr (std::is_same_v<T, std::map<std::string, double>>) {
      toml::table t;
      for (auto& [k, x] : v) t.insert_or_assign(k, x);
      table_->insert_or_assign(key, std::move(t));
    } else if constexpr (std::is_same_v<T, float>) {
      table_->insert_or_assign(key, static_cast<double>(v));
    } else if constexpr (std::is_same_v<T, uint64_t> || std::is_same_v<T, int>) {
      table_->insert_or_assign(key, static_cast<int64_t>(v));
    } else {
      table_->insert_or_assign(key, v);
    }
  }
  TomlWriter child(const char* key);
  template <typename T>
  void table_array(const char* key, const std::vector<T>& items) {
    toml::array a;
    for (const auto& item : items) {
      toml::table t;
      TomlWriter w(&t);
      const_cast<T&>(item).visit(w);
      a.push_back(std::move(t));
    }
    table_->insert_or_assign(key, std::move(a));
  }
  void finish() const {}  // symmetry with TomlReader, so one visit() serves both

 private:
  toml::table* table_;
};

// Parses a TOML file; syntax errors name the file, line and column.
toml::table parse_toml_file(const std::string& path);

}  // namespace btx
