// Rendering a parsed Jinja template (jinja_ast.h): statements, scopes and expressions, with
// Python's semantics (jinja_value.h).
#include <algorithm>
#include <cmath>
#include <map>

#include "btx/data/jinja_ast.h"
#include "btx/data/jinja_value.h"
#include "btx/util/error.h"

namespace btx::jinja {

namespace {

class Renderer {
 public:
  explicit Renderer(const std::string& name) : name_(name) {}

  void render(const Node& n, std::string& out) {
    step(n.line);
    if (out.size() > kMaxText) error(n.line, "the output passed {} bytes", kMaxText);
    switch (n.kind) {
      case Node::kBody:
        for (const auto& c : n.children) {
          render(*c, out);
          if (stop_ != kNone) return;
        }
        return;
      case Node::kText:
        out += n.text;
        return;
      case Node::kOutput:
        out += to_str(eval(*n.expr));
        return;
      case Node::kIf:
        for (const auto& [cond, body] : n.branches) {
          if (!cond || truthy(eval(*cond))) return render(*body, out);
        }
        return;
      case Node::kFor:
        return render_for(n, out);
      case Node::kSet: {
        Value v = eval(*n.expr);
        if (n.targets.size() == 1) {
          scopes_.back()[n.targets[0]] = std::move(v);
          return;
        }
        Value* ns = lookup(n.targets[0]);
        if (!ns || ns->type != Value::kNamespace) {
          error(n.line, "{} is not a namespace: cannot set {}.{}", n.targets[0], n.targets[0],
                n.targets[1]);
        }
        for (auto& [k, old] : *ns->dict) {
          if (k == n.targets[1]) {
            old = std::move(v);
            return;
          }
        }
        ns->dict->emplace_back(n.targets[1], std::move(v));
        return;
      }
      case Node::kBreak:
        stop_ = kBreak;
        return;
      case Node::kContinue:
        stop_ = kContinue;
        return;
    }
  }

  std::vector<std::map<std::string, Value>> scopes_;

 private:
  enum Stop { kNone, kBreak, kContinue } stop_ = kNone;

  template <typename... A>
  [[noreturn]] void error(int line, fmt::format_string<A...> f, A&&... a) const {
    fail("{}: line {}: {}", name_, line, fmt::format(f, std::forward<A>(a)...));
  }

  Value* lookup(const std::string& name) {
    for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s) {
      const auto it = s->find(name);
      if (it != s->end()) return &it->second;
    }
    return nullptr;
  }

  // Bounds on what one rendering may do, so that a hostile template is an error, not a hang or
  // an exhausted memory: steps (statements and expressions evaluated) and bytes of any text.
  static constexpr int64_t kMaxSteps = 2'000'000;
  static constexpr uint64_t kMaxText = 64u << 20;
  int64_t steps_ = 0;
  void step(int line) {
    if (++steps_ > kMaxSteps) error(line, "the template took more than {} steps", kMaxSteps);
  }
  Value text(const Expr& e, std::string s) {
    if (s.size() > kMaxText) error(e.line, "a text of more than {} bytes", kMaxText);
    return Value::str(std::move(s));
  }

  std::string where(int line) const { return fmt::format("{}: line {}", name_, line); }

  // Each iteration has its own scope (a set in the body lasts until the next iteration, as in
  // Jinja), as does the loop's filter.
  void render_for(const Node& n, std::string& out) {
    List all = items_of(eval(*n.expr), where(n.line));
    List items;
    for (auto& x : all) {
      if (n.filter) {
        scopes_.emplace_back();
        bind(n, x);
        const bool keep = truthy(eval(*n.filter));
        scopes_.pop_back();
        if (!keep) continue;
      }
      items.push_back(std::move(x));
    }
    const auto len = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < len; ++k) {
      scopes_.emplace_back();
      bind(n, items[k]);
      scopes_.back()["loop"] = Value::of_dict({{"index", Value::of(k + 1)},
                                               {"index0", Value::of(k)},
                                               {"revindex", Value::of(len - k)},
                                               {"revindex0", Value::of(len - k - 1)},
                                               {"first", Value::of(k == 0)},
                                               {"last", Value::of(k == len - 1)},
                                               {"length", Value::of(len)},
                                               {"previtem", k > 0 ? items[k - 1] : Value()},
                                               {"nextitem", k + 1 < len ? items[k + 1] : Value()}},
                                              Value::kLoop);
      render(*n.body, out);
      scopes_.pop_back();
      const Stop stop = stop_;
      stop_ = kNone;
      if (stop == kBreak) break;
    }
    if (len == 0 && n.else_body) render(*n.else_body, out);
  }

  void bind(const Node& n, const Value& x) {
    if (n.targets.size() == 1) {
      scopes_.back()[n.targets[0]] = x;
      return;
    }
    const List parts = x.type == Value::kList ? *x.list : List{};
    if (parts.size() != n.targets.size()) {
      error(n.line, "cannot unpack {} into {} names", to_str(x, true), n.targets.size());
    }
    for (size_t k = 0; k < parts.size(); ++k) scopes_.back()[n.targets[k]] = parts[k];
  }

  Value attr(const Value& v, const std::string& name, int line) {
    if (v.type == Value::kUndefined) error(line, "undefined value has no attribute '{}'", name);
    if (v.dict) {
      if (const Value* x = v.find(name)) return *x;
    }
    return Value();
  }

  Value item(const Value& v, const Value& key, int line) {
    if (v.type == Value::kUndefined)
      error(line, "undefined value has no item {}", to_str(key, true));
    if (v.type == Value::kList || v.type == Value::kString) {
      if (key.type != Value::kInt) error(line, "{} indices must be integers", type_name(v));
      const auto n = static_cast<int64_t>(v.type == Value::kList ? v.list->size() : v.s.size());
      const int64_t k = key.i < 0 ? key.i + n : key.i;
      if (k < 0 || k >= n) return Value();
      return v.type == Value::kList ? (*v.list)[k] : Value::str(v.s.substr(k, 1));
    }
    if (v.dict && key.type == Value::kString) return attr(v, key.s, line);
    return Value();
  }

  Value slice(const Value& v, const Expr& e) {
    const bool is_str = v.type == Value::kString;
    if (!is_str && v.type != Value::kList) error(e.line, "cannot slice a {}", type_name(v));
    const List items = is_str ? items_of(v, where(e.line)) : *v.list;
    const auto n = static_cast<int64_t>(items.size());
    auto num = [&](const ExprP& x, int64_t dflt) {
      if (!x) return dflt;
      const Value r = eval(*x);
      if (r.type == Value::kNone) return dflt;
      if (r.type != Value::kInt) error(e.line, "slice indices must be integers");
      return r.i;
    };
    const int64_t step = num(e.args[3], 1);
    if (step == 0) error(e.line, "slice step cannot be zero");
    int64_t a = num(e.args[1], step > 0 ? 0 : n - 1), b = num(e.args[2], step > 0 ? n : -n - 1);
    auto clampi = [&](int64_t x, int64_t lo, int64_t hi) { return std::max(lo, std::min(hi, x)); };
    if (a < 0) a += n;
    if (b < 0) b += n;
    a = step > 0 ? clampi(a, 0, n) : clampi(a, -1, n - 1);
    b = step > 0 ? clampi(b, 0, n) : clampi(b, -1, n - 1);
    List out;
    for (int64_t k = a; step > 0 ? k < b : k > b; k += step) out.push_back(items[k]);
    if (!is_str) return Value::of_list(std::move(out));
    std::string s;
    for (const auto& x : out) s += x.s;
    return Value::str(s);
  }

  std::vector<Value> eval_args(const Expr& e, size_t from, Kwargs* kwargs) {
    std::vector<Value> args;
    for (size_t k = from; k < e.args.size(); ++k)
      args.push_back(e.args[k] ? eval(*e.args[k]) : Value());
    for (const auto& [k, x] : e.kwargs) kwargs->emplace_back(k, eval(*x));
    return args;
  }

 public:
  Value eval(const Expr& e) {
    step(e.line);
    switch (e.kind) {
      case Expr::kLiteral:
        return from_json(e.literal);
      case Expr::kName: {
        const Value* v = lookup(e.name);
        return v ? *v : Value();
      }
      case Expr::kList: {
        List l;
        for (const auto& x : e.args) l.push_back(eval(*x));
        Value v = Value::of_list(std::move(l));
        v.tuple = e.name == "tuple";
        return v;
      }
      case Expr::kDict: {
        Dict d;
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          const Value key = eval(*e.args[k]);
          if (key.type != Value::kString) error(e.line, "dict keys must be strings here");
          Value v = eval(*e.args[k + 1]);
          bool found = false;
          for (auto& kv : d) {
            if (kv.first == key.s) {
              kv.second = v;
              found = true;
            }
          }
          if (!found) d.emplace_back(key.s, std::move(v));
        }
        return Value::of_dict(std::move(d));
      }
      case Expr::kAttr:
        return attr(eval(*e.args[0]), e.name, e.line);
      case Expr::kItem:
        return item(eval(*e.args[0]), eval(*e.args[1]), e.line);
      case Expr::kSlice:
        return slice(eval(*e.args[0]), e);
      case Expr::kCall: {
        Kwargs kwargs;
        if (!e.args[0]) {  // a function: no object before its name
          return call_function(e.name, eval_args(e, 1, &kwargs), kwargs, where(e.line));
        }
        const Value self = eval(*e.args[0]);
        return call_method(self, e.name, eval_args(e, 1, &kwargs), kwargs, where(e.line));
      }
      case Expr::kFilter: {
        Kwargs kwargs;
        const Value v = eval(*e.args[0]);
        return apply_filter(e.name, v, eval_args(e, 1, &kwargs), kwargs, where(e.line));
      }
      case Expr::kTest: {
        Kwargs kwargs;
        const Value v = eval(*e.args[0]);
        const bool r = apply_test(e.name, v, eval_args(e, 1, &kwargs), where(e.line));
        return Value::of(r != e.negated);
      }
      case Expr::kNot:
        return Value::of(!truthy(eval(*e.args[0])));
      case Expr::kNeg: {
        const Value v = eval(*e.args[0]);
        if (v.type == Value::kInt || v.type == Value::kBool)
          return Value::of(-static_cast<int64_t>(v.number()));
        if (v.type == Value::kFloat) return Value::real(-v.f);
        error(e.line, "bad operand type for unary -: '{}'", type_name(v));
      }
      case Expr::kBinary:
        return binary(e);
      case Expr::kCond:
        if (truthy(eval(*e.args[0]))) return eval(*e.args[1]);
        return e.args[2] ? eval(*e.args[2]) : Value();
    }
    return Value();
  }

 private:
  Value binary(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      Value a = eval(*e.args[0]);
      return truthy(a) ? eval(*e.args[1]) : a;
    }
    if (op == "or") {
      Value a = eval(*e.args[0]);
      return truthy(a) ? a : eval(*e.args[1]);
    }
    const Value a = eval(*e.args[0]), b = eval(*e.args[1]);
    if (op == "~") return text(e, to_str(a) + to_str(b));
    if (op == "==") return Value::of(equal(a, b));
    if (op == "!=") return Value::of(!equal(a, b));
    if (op == "in" || op == "notin") {
      bool in = false;
      if (b.type == Value::kString && a.type == Value::kString) {
        in = b.s.find(a.s) != std::string::npos;
      } else if (b.type == Value::kList) {
        in = std::any_of(b.list->begin(), b.list->end(),
                         [&](const Value& x) { return equal(a, x); });
      } else if (b.dict && a.type == Value::kString) {
        in = b.find(a.s) != nullptr;
      } else if (b.type != Value::kUndefined) {
        error(e.line, "'in <{}>' requires a string, list or mapping", type_name(b));
      }
      return Value::of(op == "in" ? in : !in);
    }
    if (op == "<" || op == "<=" || op == ">" || op == ">=") {
      int c = 0;
      if (a.is_number() && b.is_number()) {
        c = a.number() < b.number() ? -1 : a.number() > b.number() ? 1 : 0;
      } else if (a.type == Value::kString && b.type == Value::kString) {
        c = a.s.compare(b.s);
      } else {
        error(e.line, "'{}' not supported between '{}' and '{}'", op, type_name(a), type_name(b));
      }
      return Value::of(op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0);
    }
    if (op == "+" && a.type == Value::kString && b.type == Value::kString)
      return text(e, a.s + b.s);
    if (op == "+" && a.type == Value::kList && b.type == Value::kList) {
      List l = *a.list;
      l.insert(l.end(), b.list->begin(), b.list->end());
      return Value::of_list(std::move(l));
    }
    if (op == "*" && a.type == Value::kString && b.type == Value::kInt) {
      std::string r;
      if (b.i > 0 && a.s.size() * static_cast<uint64_t>(b.i) > kMaxText) {
        error(e.line, "a text of more than {} bytes", kMaxText);
      }
      for (int64_t k = 0; k < b.i; ++k) r += a.s;
      return Value::str(r);
    }
    if (!a.is_number() || !b.is_number()) {
      error(e.line, "unsupported operand types for {}: '{}' and '{}'", op, type_name(a),
            type_name(b));
    }
    const bool ints = a.type != Value::kFloat && b.type != Value::kFloat;
    const double x = a.number(), y = b.number();
    if (op == "/") {
      if (y == 0) error(e.line, "division by zero");
      return Value::real(x / y);
    }
    if (op == "//" || op == "%") {
      if (y == 0) error(e.line, "division by zero");
      const double q = std::floor(x / y);
      if (op == "//") return ints ? Value::of(static_cast<int64_t>(q)) : Value::real(q);
      return ints ? Value::of(static_cast<int64_t>(x - q * y)) : Value::real(x - q * y);
    }
    if (op == "**")
      return ints && y >= 0 ? Value::of(static_cast<int64_t>(std::pow(x, y)))
                            : Value::real(std::pow(x, y));
    const double r = op == "+" ? x + y : op == "-" ? x - y : x * y;
    return ints ? Value::of(static_cast<int64_t>(r)) : Value::real(r);
  }

  const std::string& name_;
};

}  // namespace

Template Template::parse(const std::string& source, const std::string& name) {
  Template t;
  t.root_ = parse_template(source, name);
  t.name_ = name;
  return t;
}

std::string Template::render(const nlohmann::ordered_json& context) const {
  BTX_CHECK(context.is_object(), "{}: the context must be an object", name_);
  Renderer r(name_);
  r.scopes_.emplace_back();
  for (const auto& [k, v] : context.items()) r.scopes_.back()[k] = from_json(v);
  std::string out;
  r.render(*root_, out);
  return out;
}

}  // namespace btx::jinja
