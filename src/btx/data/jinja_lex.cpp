// The Jinja lexer (jinja_ast.h): text and tags, whitespace control ("-" and "+"), and
// trim_blocks and lstrip_blocks as transformers sets them; inside tags, names, strings, numbers
// and operators.
#include <algorithm>
#include <cctype>

#include "btx/data/jinja_ast.h"
#include "btx/util/error.h"

namespace btx::jinja {

namespace {

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

}  // namespace

std::vector<Token> lex_template(const std::string& source, const std::string& name) {
  return Lexer(source, name).run();
}

}  // namespace btx::jinja
