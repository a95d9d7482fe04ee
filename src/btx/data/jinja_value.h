// Values of the Jinja engine (jinja.h) with Python's semantics, and its built-in filters, tests,
// functions and methods (jinja_builtins.cpp). Internal to data/.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace btx::jinja {

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // in insertion order, as Python's

struct Value {
  enum Type { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kLoop };
  Type type = kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::shared_ptr<List> list;  // shared: Python's reference semantics
  bool tuple = false;          // a list written as Python's tuple
  std::shared_ptr<Dict> dict;  // kDict, kNamespace, kLoop

  static Value none() { return make(kNone); }
  static Value of(bool v) {
    Value x = make(kBool);
    x.b = v;
    return x;
  }
  static Value of(int64_t v) {
    Value x = make(kInt);
    x.i = v;
    return x;
  }
  static Value real(double v) {
    Value x = make(kFloat);
    x.f = v;
    return x;
  }
  static Value str(std::string v) {
    Value x = make(kString);
    x.s = std::move(v);
    return x;
  }
  static Value of_list(List v) {
    Value x = make(kList);
    x.list = std::make_shared<List>(std::move(v));
    return x;
  }
  static Value of_dict(Dict v, Type t = kDict) {
    Value x = make(t);
    x.dict = std::make_shared<Dict>(std::move(v));
    return x;
  }
  static Value make(Type t) {
    Value x;
    x.type = t;
    return x;
  }

  bool is_number() const { return type == kInt || type == kFloat || type == kBool; }
  double number() const {
    return type == kFloat ? f : type == kBool ? (b ? 1 : 0) : static_cast<double>(i);
  }
  const Value* find(const std::string& key) const {
    if (!dict) return nullptr;
    for (const auto& [k, v] : *dict) {
      if (k == key) return &v;
    }
    return nullptr;
  }
};

Value from_json(const nlohmann::ordered_json& j);
// Python's str() of a value (its repr inside containers, or with `inner`).
std::string to_str(const Value& v, bool inner = false);
// json.dumps(v, ensure_ascii=False, indent=indent) as transformers' tojson calls it.
std::string to_json_text(const Value& v, int indent);
bool truthy(const Value& v);
// Jinja's int filter: a number or numeric text as an integer, else `dflt`.
int64_t to_int(const Value& v, int64_t dflt);
bool equal(const Value& a, const Value& b);
const char* type_name(const Value& v);
// Python's str.strip/lstrip/rstrip: whitespace, or the characters of `chars`.
std::string strip(const std::string& s, const std::string& chars, bool left, bool right);
// The items a for loop visits: a list's, a string's characters, a mapping's keys. `where`
// prefixes errors.
List items_of(const Value& v, const std::string& where);

using Kwargs = std::vector<std::pair<std::string, Value>>;
// The names of the built-ins below: what the parser admits (anything else is refused there).
bool known_filter(const std::string& name);
bool known_test(const std::string& name);
bool known_function(const std::string& name);
bool known_method(const std::string& name);
// The built-ins, by the names the parser admits (jinja_parse.cpp); `where` ("NAME: line N")
// prefixes errors. `test_call` applies a test by name (selectattr, rejectattr).
Value apply_filter(const std::string& name, const Value& v, const std::vector<Value>& args,
                   const Kwargs& kwargs, const std::string& where);
bool apply_test(const std::string& name, const Value& v, const std::vector<Value>& args,
                const std::string& where);
Value call_method(const Value& self, const std::string& name, const std::vector<Value>& args,
                  const Kwargs& kwargs, const std::string& where);
Value call_function(const std::string& name, const std::vector<Value>& args, const Kwargs& kwargs,
                    const std::string& where);

}  // namespace btx::jinja
