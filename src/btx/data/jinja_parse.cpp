// Parsing a Jinja template (jinja.h) into its tree (jinja_ast.h): the lexer (text, tags,
// whitespace control, trim_blocks and lstrip_blocks as transformers sets them) and a
// recursive-descent parser with Jinja's operator precedence. What is not implemented is refused
// here, by name and line.
#include <algorithm>
#include <set>

#include "btx/data/jinja_ast.h"
#include "btx/util/error.h"

namespace btx::jinja {

namespace {

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

const std::set<std::string> kFilters = {
    "length",     "count",   "trim",    "tojson", "string",     "lower",     "upper", "title",
    "capitalize", "first",   "last",    "join",   "default",    "d",         "int",   "float",
    "list",       "reverse", "replace", "items",  "abs",        "round",     "safe",  "unique",
    "min",        "max",     "sum",     "map",    "selectattr", "rejectattr"};
const std::set<std::string> kTests = {"defined", "undefined", "none",     "string",   "number",
                                      "integer", "float",     "boolean",  "true",     "false",
                                      "mapping", "iterable",  "sequence", "callable", "equalto",
                                      "eq",      "in",        "sameas"};
const std::set<std::string> kFunctions = {"namespace", "range", "raise_exception", "strftime_now"};
const std::set<std::string> kMethods = {
    "startswith", "endswith", "split", "strip", "lstrip", "rstrip", "upper",  "lower", "title",
    "capitalize", "replace",  "find",  "count", "items",  "keys",   "values", "get"};

class Lexer {
 public:
  Lexer(const std::string& src, const std::string& name) : s_(src), name_(name) {}

  std::vector<Token> run() {
    while (pos_ < s_.size()) {
      const size_t open = find_tag(pos_);
      const std::string raw = s_.substr(pos_, open - pos_);
      const char kind = open < s_.size() ? s_[open + 1] : 0;  // '{', '%' or '#'
      const bool minus = open + 2 < s_.size() && s_[open + 2] == '-';
      const bool plus = open + 2 < s_.size() && s_[open + 2] == '+';
      size_t begin = 0, end = raw.size();
      if (strip_next_) {  // "-%}" / "-}}" / "-#}" before this text
        begin = std::min(raw.size(), raw.find_first_not_of(" \t\r\n"));
      } else if (trim_next_) {  // trim_blocks: the newline after a block or comment tag
        begin = raw.rfind("\r\n", 0) == 0 ? 2 : (!raw.empty() && raw[0] == '\n' ? 1 : 0);
      }
      if (minus) {
        const auto last = raw.find_last_not_of(" \t\r\n");
        end = last == std::string::npos ? 0 : last + 1;
      } else if ((kind == '%' || kind == '#') && !plus) {  // lstrip_blocks
        const auto nl = raw.find_last_of('\n');
        const size_t from = nl == std::string::npos ? 0 : nl + 1;
        const bool line_start = nl != std::string::npos || pos_ == 0 || s_[pos_ - 1] == '\n';
        if (line_start && raw.find_first_not_of(" \t", from) == std::string::npos) end = from;
      }
      if (begin < end) out_.push_back({Token::kText, raw.substr(begin, end - begin), line_});
      strip_next_ = trim_next_ = false;
      line_ += count_lines(pos_, open);
      if (open == s_.size()) break;
      pos_ = open + 2 + (minus || plus ? 1 : 0);
      if (kind == '#') {
        const size_t close = s_.find("#}", pos_);
        if (close == std::string::npos) fail("{}: line {}: a comment is not closed", name_, line_);
        line_ += count_lines(pos_, close);
        strip_next_ = close > pos_ && s_[close - 1] == '-';
        trim_next_ = !strip_next_;
        pos_ = close + 2;
        continue;
      }
      out_.push_back({kind == '{' ? Token::kVarBegin : Token::kBlockBegin, "", line_});
      lex_tag(kind == '{' ? '}' : '%');
    }
    out_.push_back({Token::kEnd, "", line_});
    return std::move(out_);
  }

 private:
  // The next "{{", "{%" or "{#" at or after `from`; s_.size() when none.
  size_t find_tag(size_t from) const {
    for (size_t i = s_.find('{', from); i != std::string::npos; i = s_.find('{', i + 1)) {
      if (i + 1 < s_.size() && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
    }
    return s_.size();
  }
  int count_lines(size_t a, size_t b) const {
    return static_cast<int>(std::count(s_.begin() + a, s_.begin() + b, '\n'));
  }
  void lex_tag(char kind) {
    const char* ops3[] = {"//", "**", "==", "!=", "<=", ">="};
    while (true) {
      while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) {
        if (s_[pos_] == '\n') ++line_;
        ++pos_;
      }
      if (pos_ >= s_.size()) fail("{}: line {}: a tag is not closed", name_, line_);
      // The end: "}}" / "%}", possibly after "-" (strip what follows) or "+".
      const std::string close = std::string(1, kind) + "}";
      const bool sign = (s_[pos_] == '-' || s_[pos_] == '+') && s_.compare(pos_ + 1, 2, close) == 0;
      if (sign || s_.compare(pos_, 2, close) == 0) {
        out_.push_back({kind == '}' ? Token::kVarEnd : Token::kBlockEnd, "", line_});
        strip_next_ = sign && s_[pos_] == '-';
        trim_next_ = !sign && kind == '%';
        pos_ += sign ? 3 : 2;
        return;
      }
      const char c = s_[pos_];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos_;
        while (e < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[e])) || s_[e] == '_'))
          ++e;
        out_.push_back({Token::kName, s_.substr(pos_, e - pos_), line_});
        pos_ = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t e = pos_;
        bool real = false;
        while (e < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[e])) || s_[e] == '_'))
          ++e;
        if (e + 1 < s_.size() && s_[e] == '.' &&
            std::isdigit(static_cast<unsigned char>(s_[e + 1]))) {
          real = true;
          ++e;
          while (e < s_.size() && std::isdigit(static_cast<unsigned char>(s_[e]))) ++e;
        }
        if (e < s_.size() && (s_[e] == 'e' || s_[e] == 'E')) {
          size_t k = e + 1;
          if (k < s_.size() && (s_[k] == '+' || s_[k] == '-')) ++k;
          if (k < s_.size() && std::isdigit(static_cast<unsigned char>(s_[k]))) {
            real = true;
            e = k;
            while (e < s_.size() && std::isdigit(static_cast<unsigned char>(s_[e]))) ++e;
          }
        }
        std::string num = s_.substr(pos_, e - pos_);
        num.erase(std::remove(num.begin(), num.end(), '_'), num.end());
        out_.push_back({real ? Token::kFloat : Token::kInt, num, line_});
        pos_ = e;
      } else if (c == '\'' || c == '"') {
        std::string v;
        size_t e = pos_ + 1;
        for (; e < s_.size() && s_[e] != c; ++e) {
          if (s_[e] == '\n') ++line_;
          if (s_[e] != '\\' || e + 1 >= s_.size()) {
            v += s_[e];
            continue;
          }
          const char n = s_[++e];
          switch (n) {
            case 'n':
              v += '\n';
              break;
            case 't':
              v += '\t';
              break;
            case 'r':
              v += '\r';
              break;
            case '\\':
              v += '\\';
              break;
            case '\'':
              v += '\'';
              break;
            case '"':
              v += '"';
              break;
            case '\n':
              break;
            default:
              fail("{}: line {}: the string escape \\{} is not implemented", name_, line_, n);
          }
        }
        if (e >= s_.size()) fail("{}: line {}: a string is not closed", name_, line_);
        out_.push_back({Token::kString, v, line_});
        pos_ = e + 1;
      } else {
        std::string op(1, c);
        for (const char* two : ops3) {
          if (s_.compare(pos_, 2, two) == 0) op = two;
        }
        if (std::string("+-*/%~=<>!()[]{}.,:|").find(c) == std::string::npos) {
          fail("{}: line {}: unexpected character '{}' in a tag", name_, line_, c);
        }
        out_.push_back({Token::kOp, op, line_});
        pos_ += op.size();
      }
    }
  }

  const std::string& s_;
  const std::string& name_;
  size_t pos_ = 0;
  int line_ = 1;
  bool strip_next_ = false, trim_next_ = false;
  std::vector<Token> out_;
};

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
  NodeP parse_body(const std::set<std::string>& stops) {
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

  NodeP statement() {
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

  ExprP make(Expr::Kind kind, std::vector<ExprP> args, std::string name = "") const {
    auto e = std::make_shared<Expr>();
    e->kind = kind;
    e->line = peek().line;
    e->args = std::move(args);
    e->name = std::move(name);
    return e;
  }

  ExprP expression(bool with_condition = true) {
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
  ExprP or_expr() {
    ExprP e = and_expr();
    while (is_name("or")) {
      ++i_;
      e = make(Expr::kBinary, {e, and_expr()}, "or");
    }
    return e;
  }
  ExprP and_expr() {
    ExprP e = not_expr();
    while (is_name("and")) {
      ++i_;
      e = make(Expr::kBinary, {e, not_expr()}, "and");
    }
    return e;
  }
  ExprP not_expr() {
    if (is_name("not")) {
      ++i_;
      return make(Expr::kNot, {not_expr()});
    }
    return compare();
  }
  ExprP compare() {
    ExprP e = concat();
    while (true) {
      std::string op;
      if (peek().kind == Token::kOp &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
           peek().text == "<=" || peek().text == ">" || peek().text == ">=")) {
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
  ExprP concat() {
    ExprP e = sum();
    while (is_op("~")) {
      ++i_;
      e = make(Expr::kBinary, {e, sum()}, "~");
    }
    return e;
  }
  ExprP sum() {
    ExprP e = product();
    while (is_op("+") || is_op("-")) {
      const std::string op = next().text;
      e = make(Expr::kBinary, {e, product()}, op);
    }
    return e;
  }
  ExprP product() {
    ExprP e = power();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = next().text;
      e = make(Expr::kBinary, {e, power()}, op);
    }
    return e;
  }
  ExprP power() {
    ExprP e = unary();
    while (is_op("**")) {
      ++i_;
      e = make(Expr::kBinary, {e, unary()}, "**");
    }
    return e;
  }
  ExprP unary() {
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
  ExprP unary_plain() {
    if (is_op("-")) {
      ++i_;
      return make(Expr::kNeg, {unary_plain()});
    }
    return postfix(primary());
  }

  // "(a, k=v)" after a callable: positional args appended to e->args, keyword ones to kwargs.
  void call_args(Expr& e) {
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

  ExprP filters(ExprP e) {
    while (true) {
      if (is_op("|")) {
        ++i_;
        const std::string f = expect_name();
        if (!kFilters.count(f)) error("the filter '{}' is not implemented", f);
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
        } else if (!kTests.count(test)) {
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

  ExprP primary() {
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
      return lit(std::stoll(t.text));
    }
    if (t.kind == Token::kFloat) {
      ++i_;
      return lit(std::stod(t.text));
    }
    if (t.kind == Token::kName) {
      ++i_;
      if (t.text == "true" || t.text == "True") return lit(true);
      if (t.text == "false" || t.text == "False") return lit(false);
      if (t.text == "none" || t.text == "None") return lit(nullptr);
      if (is_op("(") && !kFunctions.count(t.text)) {
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

  ExprP postfix(ExprP e) {
    while (true) {
      if (is_op(".")) {
        ++i_;
        const std::string attr = expect_name();
        if (is_op("(")) {
          if (!kMethods.count(attr)) error("the method '{}' is not implemented", attr);
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

  std::vector<Token> t_;
  const std::string& name_;
  size_t i_ = 0;
};

}  // namespace

NodeP parse_template(const std::string& source, const std::string& name) {
  return Parser(Lexer(source, name).run(), name).parse();
}

}  // namespace btx::jinja
