#include "btx/config/toml_reader.h"

#include <limits>

#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

TomlReader::TomlReader(const toml::table* table, std::string file, std::string prefix)
    : table_(table), file_(std::move(file)), prefix_(std::move(prefix)) {}

std::string TomlReader::where(const char* key) const {
  return fmt::format("{}: key '{}{}'", file_, prefix_.empty() ? "" : prefix_ + ".", key);
}

std::string TomlReader::dotted(const char* key) const {
  return fmt::format("{} {}{}", file_, prefix_.empty() ? "" : prefix_ + ".", key);
}

const toml::node* TomlReader::get(const char* key) {
  seen_.insert(key);
  return table_ ? table_->get(key) : nullptr;
}

void TomlReader::field(const char* key, int64_t& v) {
  if (auto* n = get(key)) {
    auto x = n->value<int64_t>();
    BTX_CHECK(x && n->is_integer(), "{} must be an integer", where(key));
    v = *x;
  }
}

void TomlReader::field(const char* key, int& v) {
  int64_t x = v;
  field(key, x);
  BTX_CHECK(x >= std::numeric_limits<int>::min() && x <= std::numeric_limits<int>::max(),
            "{} = {} is out of range", where(key), x);
  v = static_cast<int>(x);
}

void TomlReader::field(const char* key, uint64_t& v) {
  int64_t x = static_cast<int64_t>(v);
  field(key, x);
  BTX_CHECK(x >= 0, "{} must be a non-negative integer, got {}", where(key), x);
  v = static_cast<uint64_t>(x);
}

void TomlReader::field(const char* key, double& v) {
  if (auto* n = get(key)) {
    BTX_CHECK(n->is_number(), "{} must be a number", where(key));
    v = *n->value<double>();
  }
}

void TomlReader::field(const char* key, float& v) {
  double x = v;
  field(key, x);
  v = static_cast<float>(x);
}

void TomlReader::field(const char* key, bool& v) {
  if (auto* n = get(key)) {
    BTX_CHECK(n->is_boolean(), "{} must be true or false", where(key));
    v = *n->value<bool>();
  }
}

void TomlReader::field(const char* key, std::string& v) {
  if (auto* n = get(key)) {
    BTX_CHECK(n->is_string(), "{} must be a string", where(key));
    v = *n->value<std::string>();
  }
}

void TomlReader::field(const char* key, std::vector<std::string>& v) {
  if (auto* n = get(key)) {
    auto* arr = n->as_array();
    BTX_CHECK(arr, "{} must be an array of strings", where(key));
    v.clear();
    for (auto& e : *arr) {
      BTX_CHECK(e.is_string(), "{} must be an array of strings", where(key));
      v.push_back(*e.value<std::string>());
    }
  }
}

void TomlReader::field(const char* key, std::map<std::string, double>& v) {
  if (auto* n = get(key)) {
    auto* t = n->as_table();
    BTX_CHECK(t, "{} must be a table of numbers", where(key));
    v.clear();
    for (auto& [k, e] : *t) {
      BTX_CHECK(e.is_number(), "{} entry '{}' must be a number", where(key), k.str());
      v[std::string(k.str())] = *e.value<double>();
    }
  }
}

TomlReader TomlReader::child(const char* key) {
  const toml::table* t = nullptr;
  if (auto* n = get(key)) {
    t = n->as_table();
    BTX_CHECK(t, "{} must be a table ([{}])", where(key), key);
  }
  return TomlReader(t, file_, prefix_.empty() ? key : prefix_ + "." + key);
}

void TomlReader::not_table_array(const char* key) const {
  fail("{} must be an array of tables ([[{}]] sections)", where(key), key);
}

void TomlReader::finish() const {
  if (!table_) return;
  for (auto& [k, v] : *table_) {
    if (!seen_.count(std::string(k.str()))) {
      fail("{}: unknown key '{}{}' (check its spelling; see configs/tiny.toml for every key)",
           file_, prefix_.empty() ? "" : prefix_ + ".", k.str());
    }
  }
}

TomlWriter TomlWriter::child(const char* key) {
  table_->insert_or_assign(key, toml::table{});
  return TomlWriter(table_->get(key)->as_table());
}

toml::table parse_toml_file(const std::string& path) {
  check_regular_file(path);  // a folder would read as an empty config, a FIFO block for ever
  try {
    return toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    if (e.source().begin.line == 0) fail("cannot read config {}: {}", path, e.description());
    fail("{}:{}:{}: {}", path, e.source().begin.line, e.source().begin.column, e.description());
  }
}

}  // namespace btx
