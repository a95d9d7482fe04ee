// Parsing a Jinja template (jinja.h) into its tree (jinja_ast.h): text, output and the
// statements (jinja_parser.h; expressions are jinja_expr.cpp). What is not implemented is refused
// here, by name and line.
#include "btx/data/jinja_parser.h"

namespace btx::jinja {

// Nodes until a block tag whose keyword is one of `stops` (left unread).
NodeP Parser::parse_body(const std::set<std::string>& stops) {
  const Depth depth(this);
  auto body = std::make_shared<Node>();
  body->kind = Node::kBody;
  while (peek().kind != Token::kEnd) {
    const Token& t = peek();
    if (t.kind == Token::kText) {
      auto n = std::make_shared<Node>();
      n->kind = Node::kText;
      n->text = t.text;
      n->line = t.line;
      body->children.push_back(n);
      ++i_;
    } else if (t.kind == Token::kVarBegin) {
      ++i_;
      auto n = std::make_shared<Node>();
      n->kind = Node::kOutput;
      n->line = t.line;
      n->expr = expression();
      if (peek().kind != Token::kVarEnd) error("expected }}}}, found '{}'", peek().text);
      ++i_;
      body->children.push_back(n);
    } else if (t.kind == Token::kBlockBegin) {
      const std::string kw = peek_name(1);
      if (stops.count(kw)) return body;
      ++i_;
      body->children.push_back(statement());
    } else {
      error("unexpected '{}'", t.text);
    }
  }
  if (!stops.empty()) error("a block is not closed (expected {{% {} %}})", *stops.rbegin());
  return body;
}

NodeP Parser::statement() {
  const int line = peek().line;
  const std::string kw = expect_name();
  auto n = std::make_shared<Node>();
  n->line = line;
  if (kw == "if") {
    n->kind = Node::kIf;
    ExprP cond = expression();
    expect_block_end();
    while (true) {
      NodeP body = parse_body({"elif", "else", "endif"});
      n->branches.emplace_back(cond, body);
      ++i_;  // the block begin
      const std::string end = expect_name();
      if (end == "endif") break;
      if (end == "elif") {
        cond = expression();
      } else {
        cond = nullptr;
        expect_block_end();
        n->branches.emplace_back(nullptr, parse_body({"endif"}));
        ++i_;
        expect_name();
        break;
      }
      expect_block_end();
    }
    expect_block_end();
  } else if (kw == "for") {
    n->kind = Node::kFor;
    n->targets.push_back(expect_name());
    while (is_op(",")) {
      ++i_;
      n->targets.push_back(expect_name());
    }
    if (!is_name("in")) error("expected 'in' in a for statement");
    ++i_;
    n->expr = expression(/*with_condition=*/false);
    if (is_name("if")) {
      ++i_;
      n->filter = expression(false);
    }
    if (is_name("recursive")) error("the recursive for loop is not implemented");
    expect_block_end();
    n->body = parse_body({"else", "endfor"});
    ++i_;
    if (expect_name() == "else") {
      expect_block_end();
      n->else_body = parse_body({"endfor"});
      ++i_;
      expect_name();
    }
    expect_block_end();
  } else if (kw == "set") {
    n->kind = Node::kSet;
    n->targets.push_back(expect_name());
    if (is_op(".")) {
      ++i_;
      n->targets.push_back(expect_name());
    }
    if (is_op(",")) error("{{% set %}} of several names is not implemented");
    if (!is_op("=")) error("{{% set %}} blocks are not implemented (expected '=')");
    ++i_;
    n->expr = expression();
    expect_block_end();
  } else if (kw == "break" || kw == "continue") {
    n->kind = kw == "break" ? Node::kBreak : Node::kContinue;
    expect_block_end();
  } else if (kw == "generation") {  // transformers' assistant-mask marker: its body as is
    expect_block_end();
    n = std::const_pointer_cast<Node>(parse_body({"endgeneration"}));
    ++i_;
    expect_name();
    expect_block_end();
  } else {
    error("the {{% {} %}} statement is not implemented", kw);
  }
  return n;
}
NodeP parse_template(const std::string& source, const std::string& name) {
  return Parser(lex_template(source, name), name).parse();
}

}  // namespace btx::jinja
