// The Jinja parser (jinja_parse.cpp: statements; jinja_expr.cpp: expressions) over the lexer's
// tokens, with Jinja's operator precedence. Internal to data/.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "btx/data/jinja_ast.h"
#include "btx/util/error.h"

namespace btx::jinja {

class Parser {
 public:
  Parser(std::vector<Token> tokens, const std::string& name) : t_(std::move(tokens)), name_(name) {}

  NodeP parse() {
    auto body = parse_body({});
    if (peek().kind != Token::kEnd) error("unexpected {{% {} %}}", peek_name(1));
    return body;
  }

 private:
  template <typename... A>
  [[noreturn]] void error(fmt::format_string<A...> f, A&&... a) const {
    fail("{}: line {}: {}", name_, t_[std::min(i_, t_.size() - 1)].line,
         fmt::format(f, std::forward<A>(a)...));
  }
  const Token& peek(size_t k = 0) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  std::string peek_name(size_t k) const { return peek(k).kind == Token::kName ? peek(k).text : ""; }
  bool is_op(const char* op, size_t k = 0) const {
    return peek(k).kind == Token::kOp && peek(k).text == op;
  }
  bool is_name(const char* n, size_t k = 0) const {
    return peek(k).kind == Token::kName && peek(k).text == n;
  }
  const Token& next() { return t_[i_ < t_.size() - 1 ? i_++ : i_]; }
  void expect_op(const char* op) {
    if (!is_op(op)) error("expected '{}', found '{}'", op, peek().text);
    ++i_;
  }
  std::string expect_name() {
    if (peek().kind != Token::kName) error("expected a name, found '{}'", peek().text);
    return next().text;
  }
  void expect_block_end() {
    if (peek().kind != Token::kBlockEnd) error("expected %}}, found '{}'", peek().text);
    ++i_;
  }

  // Nodes until a block tag whose keyword is one of `stops` (left unread).
  NodeP parse_body(const std::set<std::string>& stops);

  NodeP statement();

  ExprP make(Expr::Kind kind, std::vector<ExprP> args, std::string name = "") const {
    auto e = std::make_shared<Expr>();
    e->kind = kind;
    e->line = peek().line;
    e->args = std::move(args);
    e->name = std::move(name);
    return e;
  }

  ExprP expression(bool with_condition = true);
  ExprP or_expr();
  ExprP and_expr();
  ExprP not_expr();
  ExprP compare();
  ExprP concat();
  ExprP sum();
  ExprP product();
  ExprP power();
  ExprP unary();
  ExprP unary_plain();

  // "(a, k=v)" after a callable: positional args appended to e->args, keyword ones to kwargs.
  void call_args(Expr& e);

  ExprP filters(ExprP e);

  ExprP primary();

  ExprP postfix(ExprP e);

  // Nesting of expressions and blocks, bounded so that a hostile template is an error, not a
  // stack overflow.
  struct Depth {
    explicit Depth(Parser* p) : p_(p) {
      if (++p_->depth_ > 200) p_->error("the template nests more than 200 levels deep");
    }
    ~Depth() { --p_->depth_; }
    Parser* p_;
  };

  std::vector<Token> t_;
  const std::string& name_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace btx::jinja
