// The declared parameters of a merge method (mergekit's typed parameter declarations): a
// name, a type, a range or choices, a default and a line of help. Values stay the strings the
// user wrote (merge.json records them as given); MergeParam::check validates one before
// anything runs, so that a bad `[study] methods` entry fails when the study is planned, not
// after the experts have trained.
#pragma once

#include <cstdint>
#include <limits>
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

struct MergeParam {
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
MergeParam integer_param(std::string name, std::string default_value, std::string help,
                         int64_t min = std::numeric_limits<int64_t>::min(),
                         int64_t max = std::numeric_limits<int64_t>::max());
MergeParam real_param(std::string name, std::string default_value, std::string help, double min,
                      double max = std::numeric_limits<double>::infinity(), bool min_open = false,
                      bool max_open = false);
MergeParam choice_param(std::string name, std::string default_value,
                        std::vector<std::string> choices, std::string help);
MergeParam text_param(std::string name, std::string help);

// The whole of `v` as an integer / a finite number; nullopt when it is not one.
std::optional<int64_t> parse_integer(const std::string& v);
std::optional<double> parse_real(const std::string& v);

}  // namespace btx
