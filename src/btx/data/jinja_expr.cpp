// The expressions of the Jinja parser (jinja_parser.h), from the conditional expression down to
// literals, with Jinja's precedence; the filters, tests, functions and methods a template may
// name are the built-ins' (jinja_value.h), anything else is refused by name.
#include <cerrno>
#include <cstdlib>

#include "btx/data/jinja_parser.h"
#include "btx/data/jinja_value.h"

namespace btx::jinja {

ExprP Parser::expression(bool with_condition) {
  const Depth depth(this);
  ExprP e = or_expr();
  if (with_condition && is_name("if")) {
    ++i_;
    ExprP cond = or_expr();
    ExprP other;
    if (is_name("else")) {
      ++i_;
      other = expression();
    }
    return make(Expr::kCond, {cond, e, other});
  }
  return e;
}

ExprP Parser::or_expr() {
  ExprP e = and_expr();
  while (is_name("or")) {
    ++i_;
    e = make(Expr::kBinary, {e, and_expr()}, "or");
  }
  return e;
}

ExprP Parser::and_expr() {
  ExprP e = not_expr();
  while (is_name("and")) {
    ++i_;
    e = make(Expr::kBinary, {e, not_expr()}, "and");
  }
  return e;
}

ExprP Parser::not_expr() {
  const Depth depth(this);
  if (is_name("not")) {
    ++i_;
    return make(Expr::kNot, {not_expr()});
  }
  return compare();
}

ExprP Parser::compare() {
  ExprP e = concat();
  while (true) {
    std::string op;
    if (peek().kind == Token::kOp &&
        (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == "<=" ||
         peek().text == ">" || peek().text == ">=")) {
      op = next().text;
    } else if (is_name("in")) {
      ++i_;
      op = "in";
    } else if (is_name("not") && is_name("in", 1)) {
      i_ += 2;
      op = "notin";
    } else {
      return e;
    }
    e = make(Expr::kBinary, {e, concat()}, op);
  }
}

ExprP Parser::concat() {
  ExprP e = sum();
  while (is_op("~")) {
    ++i_;
    e = make(Expr::kBinary, {e, sum()}, "~");
  }
  return e;
}

ExprP Parser::sum() {
  ExprP e = product();
  while (is_op("+") || is_op("-")) {
    const std::string op = next().text;
    e = make(Expr::kBinary, {e, product()}, op);
  }
  return e;
}

ExprP Parser::product() {
  ExprP e = power();
  while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
    const std::string op = next().text;
    e = make(Expr::kBinary, {e, power()}, op);
  }
  return e;
}

ExprP Parser::power() {
  ExprP e = unary();
  while (is_op("**")) {
    ++i_;
    e = make(Expr::kBinary, {e, unary()}, "**");
  }
  return e;
}

ExprP Parser::unary() {
  if (is_op("-")) {
    ++i_;
    return filters(make(Expr::kNeg, {unary_plain()}));
  }
  if (is_op("+")) {
    ++i_;
    return filters(unary_plain());
  }
  return filters(postfix(primary()));
}

ExprP Parser::unary_plain() {
  const Depth depth(this);
  if (is_op("-")) {
    ++i_;
    return make(Expr::kNeg, {unary_plain()});
  }
  return postfix(primary());
}

// "(a, k=v)" after a callable: positional args appended to e->args, keyword ones to kwargs.
void Parser::call_args(Expr& e) {
  expect_op("(");
  while (!is_op(")")) {
    if (peek().kind == Token::kName && is_op("=", 1)) {
      const std::string k = next().text;
      ++i_;
      e.kwargs.emplace_back(k, expression());
    } else {
      e.args.push_back(expression());
    }
    if (!is_op(",")) break;
    ++i_;
  }
  expect_op(")");
}

ExprP Parser::filters(ExprP e) {
  while (true) {
    if (is_op("|")) {
      ++i_;
      const std::string f = expect_name();
      if (!known_filter(f)) error("the filter '{}' is not implemented", f);
      auto n = std::const_pointer_cast<Expr>(make(Expr::kFilter, {e}, f));
      if (is_op("(")) call_args(*n);
      e = n;
    } else if (is_name("is")) {
      ++i_;
      bool negated = false;
      if (is_name("not")) {
        ++i_;
        negated = true;
      }
      std::string test = expect_name();
      if (test == "none" || test == "true" || test == "false") {
      } else if (!known_test(test)) {
        error("the test '{}' is not implemented", test);
      }
      auto n = std::const_pointer_cast<Expr>(make(Expr::kTest, {e}, test));
      n->negated = negated;
      if (is_op("(")) {
        call_args(*n);
      } else if (peek().kind == Token::kString || peek().kind == Token::kInt ||
                 peek().kind == Token::kFloat ||
                 (peek().kind == Token::kName && !is_name("and") && !is_name("or") &&
                  !is_name("else") && !is_name("if") && !is_name("in") && !is_name("not") &&
                  !is_name("is"))) {
        n->args.push_back(postfix(primary()));
      }
      e = n;
    } else {
      return e;
    }
  }
}

ExprP Parser::primary() {
  const Token& t = peek();
  auto lit = [&](nlohmann::ordered_json v) {
    auto e = std::const_pointer_cast<Expr>(make(Expr::kLiteral, {}));
    e->literal = std::move(v);
    return e;
  };
  if (t.kind == Token::kString) {
    std::string s;
    while (peek().kind == Token::kString) s += next().text;  // adjacent strings join
    return lit(s);
  }
  if (t.kind == Token::kInt) {
    ++i_;
    errno = 0;
    const long long v = std::strtoll(t.text.c_str(), nullptr, 10);
    if (errno == ERANGE) error("the integer {} is too large", t.text);
    return lit(static_cast<int64_t>(v));
  }
  if (t.kind == Token::kFloat) {
    ++i_;
    return lit(std::strtod(t.text.c_str(), nullptr));  // out of range: inf, as Python
  }
  if (t.kind == Token::kName) {
    ++i_;
    if (t.text == "true" || t.text == "True") return lit(true);
    if (t.text == "false" || t.text == "False") return lit(false);
    if (t.text == "none" || t.text == "None") return lit(nullptr);
    if (is_op("(") && !known_function(t.text)) {
      error("the function '{}' is not implemented", t.text);
    }
    return make(Expr::kName, {}, t.text);
  }
  if (is_op("(")) {
    ++i_;
    ExprP e = expression();
    if (!is_op(",")) {
      expect_op(")");
      return e;
    }
    std::vector<ExprP> items = {e};  // a tuple: a list that prints as one
    while (is_op(",")) {
      ++i_;
      if (is_op(")")) break;
      items.push_back(expression());
    }
    expect_op(")");
    return make(Expr::kList, std::move(items), "tuple");
  }
  if (is_op("[")) {
    ++i_;
    std::vector<ExprP> items;
    while (!is_op("]")) {
      items.push_back(expression());
      if (!is_op(",")) break;
      ++i_;
    }
    expect_op("]");
    return make(Expr::kList, std::move(items));
  }
  if (is_op("{")) {
    ++i_;
    std::vector<ExprP> items;
    while (!is_op("}")) {
      items.push_back(expression());
      expect_op(":");
      items.push_back(expression());
      if (!is_op(",")) break;
      ++i_;
    }
    expect_op("}");
    return make(Expr::kDict, std::move(items));
  }
  error("unexpected '{}' in an expression", t.text);
}

ExprP Parser::postfix(ExprP e) {
  while (true) {
    if (is_op(".")) {
      ++i_;
      const std::string attr = expect_name();
      if (is_op("(")) {
        if (!known_method(attr)) error("the method '{}' is not implemented", attr);
        auto c = std::const_pointer_cast<Expr>(make(Expr::kCall, {e}, attr));
        call_args(*c);
        e = c;
      } else {
        e = make(Expr::kAttr, {e}, attr);
      }
    } else if (is_op("[")) {
      ++i_;
      ExprP parts[3];
      int colons = 0;
      for (int k = 0; k < 3; ++k) {
        if (!is_op(":") && !is_op("]")) parts[k] = expression();
        if (k < 2 && is_op(":")) {
          ++i_;
          ++colons;
          continue;
        }
        break;
      }
      expect_op("]");
      if (colons == 0 && !parts[0]) error("expected an expression in [ ]");
      e = colons == 0 ? make(Expr::kItem, {e, parts[0]})
                      : make(Expr::kSlice, {e, parts[0], parts[1], parts[2]});
    } else if (is_op("(") && e->kind == Expr::kName) {
      auto c = std::const_pointer_cast<Expr>(make(Expr::kCall, {nullptr}, e->name));
      call_args(*c);
      e = c;
    } else if (is_op("(")) {
      error("calling this value is not implemented");
    } else {
      return e;
    }
  }
}
}  // namespace btx::jinja
