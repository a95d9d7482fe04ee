// The Jinja engine's built-ins (jinja_value.h): filters, tests, functions (with transformers'
// raise_exception and strftime_now) and the string and mapping methods templates call, each as
// Jinja and Python define it.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <set>

#include "btx/data/jinja_value.h"
#include "btx/util/error.h"
#include "btx/util/text.h"

namespace btx::jinja {

namespace {

const Value* kwarg(const Kwargs& kwargs, const char* name) {
  for (const auto& [k, v] : kwargs) {
    if (k == name) return &v;
  }
  return nullptr;
}

// Argument `k` (positional) or `name` (keyword), else null.
const Value* arg(const std::vector<Value>& args, const Kwargs& kwargs, size_t k, const char* name) {
  if (k < args.size()) return &args[k];
  return kwarg(kwargs, name);
}

const std::string& need_string(const Value& v, const std::string& what, const std::string& where) {
  if (v.type != Value::kString) fail("{}: {} expects a string, got {}", where, what, type_name(v));
  return v.s;
}

std::string ascii_lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string ascii_upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string title(const std::string& s) {
  std::string out = s;
  bool prev_letter = false;
  for (auto& c : out) {
    const bool letter = std::isalpha(static_cast<unsigned char>(c)) != 0;
    c = static_cast<char>(letter ? (prev_letter ? std::tolower(static_cast<unsigned char>(c))
                                                : std::toupper(static_cast<unsigned char>(c)))
                                 : c);
    prev_letter = letter;
  }
  return out;
}

// Python's str.split(sep=None, maxsplit=-1).
List split(const std::string& s, const Value* sep, int64_t maxsplit) {
  List out;
  if (!sep || sep->type == Value::kNone) {
    size_t k = 0;
    while (true) {
      while (k < s.size() && std::isspace(static_cast<unsigned char>(s[k]))) ++k;
      if (k >= s.size()) break;
      if (maxsplit == 0) {
        out.push_back(Value::str(strip(s.substr(k), "", false, true)));
        break;
      }
      size_t e = k;
      while (e < s.size() && !std::isspace(static_cast<unsigned char>(s[e]))) ++e;
      out.push_back(Value::str(s.substr(k, e - k)));
      k = e;
      --maxsplit;
    }
    return out;
  }
  const std::string& d = sep->s;
  size_t at = 0;
  for (size_t hit; maxsplit != 0 && (hit = s.find(d, at)) != std::string::npos; --maxsplit) {
    out.push_back(Value::str(s.substr(at, hit - at)));
    at = hit + d.size();
  }
  out.push_back(Value::str(s.substr(at)));
  return out;
}

Value attribute_of(const Value& v, const std::string& name) {
  if (const Value* x = v.find(name)) return *x;
  return Value();
}

}  // namespace

Value apply_filter(const std::string& name, const Value& v, const std::vector<Value>& args,
                   const Kwargs& kwargs, const std::string& where) {
  if (name == "length" || name == "count") {
    if (v.type == Value::kString) return Value::of(static_cast<int64_t>(items_of(v, where).size()));
    if (v.type == Value::kList) return Value::of(static_cast<int64_t>(v.list->size()));
    if (v.dict) return Value::of(static_cast<int64_t>(v.dict->size()));
    if (v.type == Value::kUndefined) return Value::of(int64_t{0});
    fail("{}: object of type '{}' has no len()", where, type_name(v));
  }
  if (name == "trim") {
    const Value* chars = arg(args, kwargs, 0, "chars");
    return Value::str(
        strip(to_str(v), chars && chars->type == Value::kString ? chars->s : "", true, true));
  }
  if (name == "tojson") {
    const Value* indent = arg(args, kwargs, 0, "indent");
    return Value::str(
        to_json_text(v, indent && indent->type == Value::kInt ? static_cast<int>(indent->i) : 0));
  }
  if (name == "string") return Value::str(to_str(v));
  if (name == "lower") return Value::str(ascii_lower(to_str(v)));
  if (name == "upper") return Value::str(ascii_upper(to_str(v)));
  if (name == "title") return Value::str(title(to_str(v)));
  if (name == "capitalize") {
    std::string s = ascii_lower(to_str(v));
    if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
    return Value::str(s);
  }
  if (name == "safe") return v;
  if (name == "default" || name == "d") {
    const Value* dflt = arg(args, kwargs, 0, "default_value");
    const Value* boolean = arg(args, kwargs, 1, "boolean");
    const bool use = v.type == Value::kUndefined || (boolean && truthy(*boolean) && !truthy(v));
    return use ? (dflt ? *dflt : Value::str("")) : v;
  }
  if (name == "first" || name == "last") {
    const List items = items_of(v, where);
    if (items.empty()) return Value();
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return Value::of_list(items_of(v, where));
  if (name == "reverse") {
    List items = items_of(v, where);
    std::reverse(items.begin(), items.end());
    if (v.type != Value::kString) return Value::of_list(std::move(items));
    std::string s;
    for (const auto& x : items) s += x.s;
    return Value::str(s);
  }
  if (name == "join") {
    const Value* sep = arg(args, kwargs, 0, "d");
    const Value* attr = kwarg(kwargs, "attribute");
    std::string out;
    bool first = true;
    for (const auto& x : items_of(v, where)) {
      out += (first ? ""
              : sep ? to_str(*sep)
                    : "") +
             to_str(attr ? attribute_of(x, to_str(*attr)) : x);
      first = false;
    }
    return Value::str(out);
  }
  if (name == "int") {
    const Value* dflt = arg(args, kwargs, 0, "default");
    return Value::of(to_int(v, dflt ? to_int(*dflt, 0) : 0));
  }
  if (name == "float") {
    if (v.is_number()) return Value::real(v.number());
    try {
      return Value::real(std::stod(to_str(v)));
    } catch (const std::exception&) {
      return Value::real(0.0);
    }
  }
  if (name == "replace") {
    if (args.size() < 2) fail("{}: replace needs the old and the new text", where);
    const Value* count = arg(args, kwargs, 2, "count");
    return Value::str(
        replace_text(to_str(v), to_str(args[0]), to_str(args[1]), count ? to_int(*count, -1) : -1));
  }
  if (name == "items") {
    if (!v.dict) fail("{}: items expects a mapping, got {}", where, type_name(v));
    List out;
    for (const auto& [k, x] : *v.dict) {
      out.push_back(Value::of_list({Value::str(k), x}));
      out.back().tuple = true;
    }
    return Value::of_list(std::move(out));
  }
  if (name == "abs") {
    if (v.type == Value::kFloat) return Value::real(std::fabs(v.f));
    return Value::of(static_cast<int64_t>(std::llabs(static_cast<long long>(v.number()))));
  }
  if (name == "round") {
    const Value* precision = arg(args, kwargs, 0, "precision");
    const double p = std::pow(10.0, precision ? static_cast<double>(to_int(*precision, 0)) : 0.0);
    return Value::real(std::round(v.number() * p) / p);
  }
  if (name == "unique") {
    List out;
    for (const auto& x : items_of(v, where)) {
      if (std::none_of(out.begin(), out.end(), [&](const Value& y) { return equal(x, y); })) {
        out.push_back(x);
      }
    }
    return Value::of_list(std::move(out));
  }
  if (name == "min" || name == "max" || name == "sum") {
    const List items = items_of(v, where);
    if (name == "sum") {
      bool real = false;
      double total = 0;
      for (const auto& x : items) {
        if (!x.is_number()) fail("{}: sum of a {}", where, type_name(x));
        real = real || x.type == Value::kFloat;
        total += x.number();
      }
      return real ? Value::real(total) : Value::of(static_cast<int64_t>(total));
    }
    if (items.empty()) return Value();
    Value best = items[0];
    for (const auto& x : items) {
      const bool less =
          x.is_number() && best.is_number() ? x.number() < best.number() : to_str(x) < to_str(best);
      if (name == "min" ? less : (!less && !equal(x, best))) best = x;
    }
    return best;
  }
  if (name == "map") {
    const Value* attr = kwarg(kwargs, "attribute");
    if (!attr) fail("{}: map is implemented with attribute= only", where);
    List out;
    for (const auto& x : items_of(v, where)) out.push_back(attribute_of(x, to_str(*attr)));
    return Value::of_list(std::move(out));
  }
  if (name == "selectattr" || name == "rejectattr") {
    if (args.empty()) fail("{}: {} needs an attribute", where, name);
    const std::string attr = to_str(args[0]);
    const std::string test = args.size() > 1 ? to_str(args[1]) : "";
    const std::vector<Value> test_args(args.begin() + std::min<size_t>(2, args.size()), args.end());
    List out;
    for (const auto& x : items_of(v, where)) {
      const Value a = attribute_of(x, attr);
      const bool ok = test.empty() ? truthy(a) : apply_test(test, a, test_args, where);
      if (ok == (name == "selectattr")) out.push_back(x);
    }
    return Value::of_list(std::move(out));
  }
  fail("{}: the filter '{}' is not implemented", where, name);
}

Value call_method(const Value& self, const std::string& name, const std::vector<Value>& args,
                  const Kwargs& kwargs, const std::string& where) {
  if (self.type == Value::kString) {
    const std::string& s = self.s;
    if (name == "startswith" || name == "endswith") {
      if (args.empty()) fail("{}: {} needs an argument", where, name);
      List options = args[0].type == Value::kList ? *args[0].list : List{args[0]};
      for (const auto& o : options) {
        const std::string& p = need_string(o, name, where);
        if (name == "startswith"
                ? s.compare(0, p.size(), p) == 0
                : s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0) {
          return Value::of(true);
        }
      }
      return Value::of(false);
    }
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const Value* chars = arg(args, kwargs, 0, "chars");
      const std::string c = chars && chars->type == Value::kString ? chars->s : "";
      return Value::str(strip(s, c, name != "rstrip", name != "lstrip"));
    }
    if (name == "split") {
      const Value* maxsplit = arg(args, kwargs, 1, "maxsplit");
      return Value::of_list(
          split(s, arg(args, kwargs, 0, "sep"), maxsplit ? to_int(*maxsplit, -1) : -1));
    }
    if (name == "upper") return Value::str(ascii_upper(s));
    if (name == "lower") return Value::str(ascii_lower(s));
    if (name == "title") return Value::str(title(s));
    if (name == "capitalize") return apply_filter("capitalize", self, {}, {}, where);
    if (name == "replace") return apply_filter("replace", self, args, kwargs, where);
    if (name == "find") {
      if (args.empty()) fail("{}: find needs an argument", where);
      const auto at = s.find(need_string(args[0], name, where));
      return Value::of(at == std::string::npos ? int64_t{-1} : static_cast<int64_t>(at));
    }
    if (name == "count") {
      if (args.empty()) fail("{}: count needs an argument", where);
      const std::string& p = need_string(args[0], name, where);
      int64_t n = 0;
      for (size_t at = 0; !p.empty() && (at = s.find(p, at)) != std::string::npos; at += p.size())
        ++n;
      return Value::of(n);
    }
  }
  if (self.type == Value::kDict) {
    if (name == "items") return apply_filter("items", self, {}, {}, where);
    if (name == "keys") return Value::of_list(items_of(self, where));
    if (name == "values") {
      List out;
      for (const auto& kv : *self.dict) out.push_back(kv.second);
      return Value::of_list(std::move(out));
    }
    if (name == "get") {
      if (args.empty()) fail("{}: get needs a key", where);
      const Value* x = args[0].type == Value::kString ? self.find(args[0].s) : nullptr;
      return x ? *x : args.size() > 1 ? args[1] : Value::none();
    }
  }
  fail("{}: '{}' object has no method '{}'", where, type_name(self), name);
}

}  // namespace btx::jinja
