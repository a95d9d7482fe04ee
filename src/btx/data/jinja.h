// A small Jinja engine for the chat templates models ship in tokenizer_config.json: no C++
// Jinja library is packaged in Debian, and a template rendered approximately would put a model's
// conversations in a form it was never trained on. It renders as Hugging Face's transformers
// does (jinja2 with trim_blocks and lstrip_blocks; its tojson, raise_exception and
// strftime_now), tested against real Jinja (python3-jinja2) on the real Llama 3 and Qwen3
// templates and on every construct below. A construct it does not implement is refused when
// the template is parsed, naming it and its line -- never rendered differently.
//
// Implemented: text, {{ expr }}, {# comments #}, whitespace control (-), and the statements if /
// elif / else, for (over lists, strings and mappings, one name or a tuple of names; loop.index,
// index0, revindex, revindex0, first, last, length, previtem, nextitem; break, continue), set
// (a name, or a namespace's attribute), generation (transformers' marker, rendered as its body).
// Expressions: literals (strings, numbers, true/false/none in both cases, lists, dicts),
// names, attributes, subscripts and slices, calls, filters, tests, not/and/or, in / not in,
// comparisons, + - * / // % ~, unary -, and `a if c else b`. Functions: namespace, range,
// raise_exception, strftime_now; string methods startswith, endswith, split, strip, lstrip,
// rstrip, upper, lower, title, capitalize, replace, find, count; mapping methods items, keys,
// values, get. Filters: length/count, trim, tojson, string, lower, upper, title, capitalize,
// first, last, join, default/d, int, float, list, reverse, replace, items, abs, round, safe,
// unique, min, max, sum, map(attribute=), selectattr/rejectattr (an attribute and a test).
// Tests: defined, undefined, none, string, number, integer, float, boolean, true, false,
// mapping, iterable, sequence, callable, equalto/eq, in.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace btx::jinja {

struct Node;  // the parsed template (jinja.cpp)

class Template {
 public:
  // Parses `source`; a syntax error or a construct btx does not implement is an error naming
  // `name`, the line and the construct.
  static Template parse(const std::string& source, const std::string& name);
  // Renders with `context` as the template's variables. Errors (raise_exception, an undefined
  // value used as a mapping, a type mismatch) name the template and the line.
  std::string render(const nlohmann::ordered_json& context) const;
  const std::string& name() const { return name_; }

 private:
  std::shared_ptr<const Node> root_;
  std::string name_;
};

}  // namespace btx::jinja
