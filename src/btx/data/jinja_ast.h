// The parsed form of a Jinja template (jinja.h), shared by the parser (jinja_parse.cpp) and the
// renderer (jinja_eval.cpp). Internal to data/.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "btx/data/jinja.h"

namespace btx::jinja {

struct Expr;
using ExprP = std::shared_ptr<const Expr>;

struct Expr {
  enum Kind {
    kLiteral,  // literal
    kName,     // name
    kList,     // args: the items
    kDict,     // args: key, value, key, value...
    kAttr,     // args[0].name
    kItem,     // args[0][args[1]]
    kSlice,    // args[0][args[1]:args[2]:args[3]] (null: left out)
    kCall,     // args[0](args[1..], kwargs); name: the method or function name
    kFilter,   // name(args[0], args[1..], kwargs)
    kTest,     // args[0] is [not] name(args[1..])
    kNot,      // not args[0]
    kNeg,      // -args[0]
    kBinary,   // args[0] name args[1]: or and == != < <= > >= in notin + - * / // % ** ~
    kCond,     // args[1] if args[0] else args[2] (args[2] null: undefined)
  };
  Kind kind = kLiteral;
  int line = 0;
  nlohmann::ordered_json literal;
  std::string name;
  std::vector<ExprP> args;
  std::vector<std::pair<std::string, ExprP>> kwargs;
  bool negated = false;  // kTest: "is not"
};

struct Node;
using NodeP = std::shared_ptr<const Node>;

struct Node {
  enum Kind {
    kBody,    // children in order
    kText,    // text
    kOutput,  // {{ expr }}
    kIf,      // branches: (condition, body); the else branch's condition is null
    kFor,     // for targets in expr [if filter]: body, else_body
    kSet,     // set targets[0] = expr, or targets[0].targets[1] = expr
    kBreak,
    kContinue,
  };
  Kind kind = kBody;
  int line = 0;
  std::string text;
  ExprP expr, filter;
  std::vector<std::string> targets;
  std::vector<std::pair<ExprP, NodeP>> branches;
  NodeP body, else_body;
  std::vector<NodeP> children;
};

struct Token {
  enum Kind {
    kText,
    kVarBegin,
    kVarEnd,
    kBlockBegin,
    kBlockEnd,
    kName,
    kString,
    kInt,
    kFloat,
    kOp,
    kEnd
  };
  Kind kind;
  std::string text;
  int line;
};

// jinja_lex.cpp: the template's tokens, ending with kEnd; errors name `name` and the line.
std::vector<Token> lex_template(const std::string& source, const std::string& name);
// jinja_parse.cpp: the template's tree; errors name `name` and the line.
NodeP parse_template(const std::string& source, const std::string& name);

}  // namespace btx::jinja
