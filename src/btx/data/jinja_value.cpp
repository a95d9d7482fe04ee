// Values of the Jinja engine with Python's semantics (jinja_value.h).
#include "btx/data/jinja_value.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "btx/util/error.h"

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
        const auto c = static_cast<unsigned char>(v.s[k]);
        const size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
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

}  // namespace btx::jinja
