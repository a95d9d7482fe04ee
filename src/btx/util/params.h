// Declared parameters (mergekit's typed parameter declarations), as merge methods and the
// ensemble use them: a name, a type, a range or choices, a default and a line of help.
// Param::check validates one value before anything runs, so that a bad `[study] methods` entry
// fails when the study is planned, not after the experts have trained; ParamValues holds the
// values once they are checked, parsed to their types, and keeps the strings as given (what
// merge.json records).
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace btx {

// What a parameter's value must be.
enum class ParamType {
  kInteger,  // an integer within [min, max]
  kReal,     // a finite number within min/max (each bound open or closed)
  kChoice,   // one of `choices`
  kText,     // free text the method parses itself (e.g. --weights a=0.7,b=0.3)
};

struct Param {
  std::string name;  // as on the command line, without "--": "top-k"
  ParamType type = ParamType::kText;
  std::string help;                  // one line
  std::string default_value;         // "" when the parameter is optional with no default
  std::vector<std::string> choices;  // kChoice
  double min = -std::numeric_limits<double>::infinity();  // kInteger, kReal
  double max = std::numeric_limits<double>::infinity();
  bool min_open = false, max_open = false;  // kReal: the bound itself is excluded

  // What a value must be, for messages and --list: "an integer >= 1", "a number in [0, 1)",
  // "one of: a, b", "text".
  std::string expected() const;
  // Throws btx::Error "--NAME 'VALUE': expected ..." unless `value` fits ("" always fits: the
  // parameter was not given and has no default).
  void check(const std::string& value) const;
};

// Declarations, one line each in a method's file.
Param integer_param(std::string name, std::string default_value, std::string help,
                    int64_t min = std::numeric_limits<int64_t>::min(),
                    int64_t max = std::numeric_limits<int64_t>::max());
Param real_param(std::string name, std::string default_value, std::string help, double min,
                 double max = std::numeric_limits<double>::infinity(), bool min_open = false,
                 bool max_open = false);
Param choice_param(std::string name, std::string default_value, std::vector<std::string> choices,
                   std::string help);
Param text_param(std::string name, std::string help);

// The values of declared parameters after validation: each parsed once to its declared type.
class ParamValues {
 public:
  ParamValues() = default;
  // Each declared parameter's value: the given one, else its default; each checked by its
  // declaration (Param::check: "--NAME 'VALUE': expected ..."). A given name that is not
  // declared is an error naming it.
  static ParamValues resolve(const std::vector<Param>& declared,
                             const std::map<std::string, std::string>& given);

  // Given, or defaulted to a non-empty value.
  bool has(const std::string& name) const;
  // The value of an integer / a number parameter.
  int64_t integer(const std::string& name) const;
  double real(const std::string& name) const;
  // A choice or text parameter's value ("" when not given and without default).
  const std::string& text(const std::string& name) const;
  // A "no" / "yes" choice.
  bool flag(const std::string& name) const;
  // Any parameter's value as it was given (or defaulted), e.g. "0.30" for a number.
  const std::string& given(const std::string& name) const;
  // name -> the string as given, of every declared parameter: what merge.json records.
  std::map<std::string, std::string> strings() const;
  nlohmann::json to_json() const { return strings(); }

 private:
  struct Value {
    ParamType type = ParamType::kText;
    std::string given;
    int64_t integer = 0;
    double real = 0;
  };
  const Value& at(const std::string& name, ParamType type) const;
  std::map<std::string, Value> values_;
};

// The whole of `v` as an integer / a finite number; nullopt when it is not one.
std::optional<int64_t> parse_integer(const std::string& v);
std::optional<double> parse_real(const std::string& v);

}  // namespace btx
