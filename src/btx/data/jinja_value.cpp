// Values of the Jinja engine with Python's semantics (jinja_value.h).
#include "btx/data/jinja_value.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <set>

#include "btx/util/error.h"
#include "btx/util/utf8.h"

namespace btx::jinja {

namespace {

// Python's repr of a float: the shortest text that reads back, with ".0" on whole numbers.
std::string float_text(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", f);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string quote(const std::string& s) {  // Python's repr of a str (simple cases)
  const char q = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == q) {
      out += std::string("\\") + q;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  return out + q;
}

// json.dumps(v, ensure_ascii=False, indent=indent): Python's separators, keys in order.
void dump(const Value& v, int indent, int depth, std::string& out) {
  const std::string nl = indent > 0 ? "\n" + std::string((depth + 1) * indent, ' ') : "";
  const std::string close = indent > 0 ? "\n" + std::string(depth * indent, ' ') : "";
  const std::string sep = indent > 0 ? "," : ", ";
  switch (v.type) {
    case Value::kNone:
    case Value::kUndefined:
      out += "null";
      return;
    case Value::kBool:
      out += v.b ? "true" : "false";
      return;
    case Value::kInt:
      out += std::to_string(v.i);
      return;
    case Value::kFloat:
      out += std::isnan(v.f)   ? "NaN"
             : std::isinf(v.f) ? (v.f > 0 ? "Infinity" : "-Infinity")
                               : float_text(v.f);
      return;
    case Value::kString:
      out += nlohmann::ordered_json(v.s).dump(-1, ' ', false,
                                              nlohmann::ordered_json::error_handler_t::replace);
      return;
    case Value::kList:
      if (v.list->empty()) {
        out += "[]";
        return;
      }
      out += "[";
      for (size_t k = 0; k < v.list->size(); ++k) {
        out += (k ? sep : "") + nl;
        dump((*v.list)[k], indent, depth + 1, out);
      }
      out += close + "]";
      return;
    default:
      if (v.dict->empty()) {
        out += "{}";
        return;
      }
      out += "{";
      for (size_t k = 0; k < v.dict->size(); ++k) {
        out += (k ? sep : "") + nl + nlohmann::ordered_json((*v.dict)[k].first).dump() + ": ";
        dump((*v.dict)[k].second, indent, depth + 1, out);
      }
      out += close + "}";
  }
}

}  // namespace

Value from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::of(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned:
      return Value::of(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_float:
      return Value::real(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::str(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List l;
      for (const auto& x : j) l.push_back(from_json(x));
      return Value::of_list(std::move(l));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict d;
      for (const auto& [k, v] : j.items()) d.emplace_back(k, from_json(v));
      return Value::of_dict(std::move(d));
    }
    default:
      return Value();
  }
}

std::string to_str(const Value& v, bool inner) {
  switch (v.type) {
    case Value::kUndefined:
      return "";
    case Value::kNone:
      return "None";
    case Value::kBool:
      return v.b ? "True" : "False";
    case Value::kInt:
      return std::to_string(v.i);
    case Value::kFloat:
      return float_text(v.f);
    case Value::kString:
      return inner ? quote(v.s) : v.s;
    case Value::kList: {
      std::string out = v.tuple ? "(" : "[";
      for (size_t k = 0; k < v.list->size(); ++k) {
        out += (k ? ", " : "") + to_str((*v.list)[k], true);
      }
      if (v.tuple && v.list->size() == 1) out += ",";
      return out + (v.tuple ? ")" : "]");
    }
    default: {
      std::string out = "{";
      for (size_t k = 0; k < v.dict->size(); ++k) {
        out +=
            (k ? ", " : "") + quote((*v.dict)[k].first) + ": " + to_str((*v.dict)[k].second, true);
      }
      return out + "}";
    }
  }
}

bool truthy(const Value& v) {
  switch (v.type) {
    case Value::kUndefined:
    case Value::kNone:
      return false;
    case Value::kBool:
      return v.b;
    case Value::kInt:
      return v.i != 0;
    case Value::kFloat:
      return v.f != 0;
    case Value::kString:
      return !v.s.empty();
    case Value::kList:
      return !v.list->empty();
    default:
      return !v.dict->empty();
  }
}

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.number() == b.number();
  if (a.type != b.type) return false;
  switch (a.type) {
    case Value::kUndefined:
    case Value::kNone:
      return true;
    case Value::kString:
      return a.s == b.s;
    case Value::kList:
      return a.list->size() == b.list->size() &&
             std::equal(a.list->begin(), a.list->end(), b.list->begin(), equal);
    default:
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [k, v] : *a.dict) {
        const Value* o = b.find(k);
        if (!o || !equal(v, *o)) return false;
      }
      return true;
  }
}

const char* type_name(const Value& v) {
  static const char* names[] = {"undefined", "NoneType", "bool", "int",       "float",
                                "str",       "list",     "dict", "Namespace", "LoopContext"};
  return names[v.type];
}

std::string strip(const std::string& s, const std::string& chars, bool left, bool right) {
  size_t a = 0, b = s.size();
  auto in = [&](char c) {
    return chars.empty() ? std::isspace(static_cast<unsigned char>(c)) != 0
                         : chars.find(c) != std::string::npos;
  };
  while (left && a < b && in(s[a])) ++a;
  while (right && b > a && in(s[b - 1])) --b;
  return s.substr(a, b - a);
}

std::string to_json_text(const Value& v, int indent) {
  std::string out;
  dump(v, indent, 0, out);
  return out;
}

List items_of(const Value& v, const std::string& where) {
  switch (v.type) {
    case Value::kList:
      return *v.list;
    case Value::kString: {
      List out;
      for (size_t k = 0; k < v.s.size();) {
        const size_t len = std::max<size_t>(1, utf8_char_len(v.s, k));
        out.push_back(Value::str(v.s.substr(k, len)));
        k += len;
      }
      return out;
    }
    case Value::kDict: {
      List out;
      for (const auto& kv : *v.dict) out.push_back(Value::str(kv.first));
      return out;
    }
    case Value::kUndefined:
      return {};
    default:
      fail("{}: '{}' object is not iterable", where, type_name(v));
  }
}

int64_t to_int(const Value& v, int64_t dflt) {
  switch (v.type) {
    case Value::kInt:
      return v.i;
    case Value::kBool:
      return v.b ? 1 : 0;
    case Value::kFloat:
      return static_cast<int64_t>(v.f);
    case Value::kString:
      try {
        size_t used = 0;
        const int64_t x = std::stoll(strip(v.s, "", true, true), &used);
        return used == strip(v.s, "", true, true).size() ? x : dflt;
      } catch (const std::exception&) {
        return dflt;
      }
    default:
      return dflt;
  }
}

// The built-ins' names, which the parser admits (and nothing else).
const std::set<std::string>& filters() {
  static const std::set<std::string> names = {
      "length",     "count",   "trim",    "tojson", "string",     "lower",     "upper", "title",
      "capitalize", "first",   "last",    "join",   "default",    "d",         "int",   "float",
      "list",       "reverse", "replace", "items",  "abs",        "round",     "safe",  "unique",
      "min",        "max",     "sum",     "map",    "selectattr", "rejectattr"};
  return names;
}
const std::set<std::string>& tests() {
  static const std::set<std::string> names = {
      "defined",  "undefined", "none",    "string", "number",  "integer",
      "float",    "boolean",   "true",    "false",  "mapping", "iterable",
      "sequence", "callable",  "equalto", "eq",     "in",      "sameas"};
  return names;
}
const std::set<std::string>& functions() {
  static const std::set<std::string> names = {"namespace", "range", "raise_exception",
                                              "strftime_now"};
  return names;
}
const std::set<std::string>& methods() {
  static const std::set<std::string> names = {
      "startswith", "endswith", "split", "strip", "lstrip", "rstrip", "upper",  "lower", "title",
      "capitalize", "replace",  "find",  "count", "items",  "keys",   "values", "get"};
  return names;
}

bool known_filter(const std::string& name) {
  return filters().count(name) > 0;
}
bool known_test(const std::string& name) {
  return tests().count(name) > 0;
}
bool known_function(const std::string& name) {
  return functions().count(name) > 0;
}
bool known_method(const std::string& name) {
  return methods().count(name) > 0;
}

bool apply_test(const std::string& name, const Value& v, const std::vector<Value>& args,
                const std::string& where) {
  auto need = [&](size_t n) {
    if (args.size() < n) fail("{}: the test '{}' needs an argument", where, name);
  };
  if (name == "defined") return v.type != Value::kUndefined;
  if (name == "undefined") return v.type == Value::kUndefined;
  if (name == "none") return v.type == Value::kNone;
  if (name == "string") return v.type == Value::kString;
  if (name == "number") return v.is_number();
  if (name == "integer") return v.type == Value::kInt;
  if (name == "float") return v.type == Value::kFloat;
  if (name == "boolean") return v.type == Value::kBool;
  if (name == "true") return v.type == Value::kBool && v.b;
  if (name == "false") return v.type == Value::kBool && !v.b;
  if (name == "mapping") return v.type == Value::kDict || v.type == Value::kNamespace;
  if (name == "iterable")
    return v.type == Value::kString || v.type == Value::kList || v.type == Value::kDict;
  if (name == "sequence")
    return v.type == Value::kString || v.type == Value::kList || v.type == Value::kDict;
  if (name == "callable") return false;
  if (name == "equalto" || name == "eq" || name == "sameas") {
    need(1);
    return equal(v, args[0]);
  }
  if (name == "in") {
    need(1);
    const Value& c = args[0];
    if (c.type == Value::kString && v.type == Value::kString)
      return c.s.find(v.s) != std::string::npos;
    if (c.type == Value::kList) {
      return std::any_of(c.list->begin(), c.list->end(),
                         [&](const Value& x) { return equal(v, x); });
    }
    if (c.dict && v.type == Value::kString) return c.find(v.s) != nullptr;
    return false;
  }
  fail("{}: the test '{}' is not implemented", where, name);
}

Value call_function(const std::string& name, const std::vector<Value>& args, const Kwargs& kwargs,
                    const std::string& where) {
  if (name == "namespace") {
    Dict d;
    if (!args.empty() && args[0].dict) d = *args[0].dict;
    for (const auto& kv : kwargs) d.push_back(kv);
    return Value::of_dict(std::move(d), Value::kNamespace);
  }
  if (name == "range") {
    int64_t a = 0, b = 0, step = 1;
    if (args.size() == 1) {
      b = to_int(args[0], 0);
    } else if (args.size() >= 2) {
      a = to_int(args[0], 0);
      b = to_int(args[1], 0);
      if (args.size() > 2) step = to_int(args[2], 1);
    }
    if (step == 0) fail("{}: range() step must not be zero", where);
    List out;
    const int64_t n = step > 0 ? (b > a ? (b - a + step - 1) / step : 0)
                               : (a > b ? (a - b - step - 1) / -step : 0);
    if (n > 1'000'000) fail("{}: range() of {} numbers; at most 1000000", where, n);
    for (int64_t k = a; step > 0 ? k < b : k > b; k += step) out.push_back(Value::of(k));
    return Value::of_list(std::move(out));
  }
  if (name == "raise_exception") {
    fail("{}: the template raised: {}", where, args.empty() ? "" : to_str(args[0]));
  }
  if (name == "strftime_now") {
    if (args.empty()) fail("{}: strftime_now needs a format", where);
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[256];
    const size_t n = std::strftime(buf, sizeof buf, to_str(args[0]).c_str(), &tm);
    return Value::str(std::string(buf, n));
  }
  fail("{}: the function '{}' is not implemented", where, name);
}

}  // namespace btx::jinja
