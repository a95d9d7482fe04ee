// A command's arguments, declared once (as configs declare their keys): a struct lists its
// options in a `visit` function, and every user of the command line goes through it -- the CLI
// binds them to its options (cli/), the study writes its planned commands from them (ArgsWriter)
// and reads the arguments of its [study] methods entries with them (ArgsReader). No flag name is
// typed twice.
//
//   struct FinetuneArgs {
//     std::string run, model;
//     bool resume = false;
//     template <typename V> void visit(V& v) {
//       v.option("--run", run, "Run directory");
//       v.option("--model", model, "The merged model");
//       v.flag("--resume", resume, "Continue an interrupted finetuning");
//     }
//   };
//
// A visitor has option(flag, T&, help) for strings, paths, numbers and vectors of them
// (comma-separated), repeated(flag, std::vector<std::string>&, help) for an option given once
// per value, flag(flag, bool&, help), and params(map, declared) for options whose names are only
// known at run time (a merge method's parameters). A flag may name a short alias after a comma
// ("--jobs,-j"): the CLI accepts both, the command lines written use the first.
#pragma once

#include <fmt/format.h>

#include <cctype>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace btx {

// An option whose name is only known at run time: "--NAME" and its help.
struct DynamicOption {
  std::string name;  // without "--"
  std::string help;
};

// One option's value as a command-line word.
inline std::string arg_word(const std::string& v) {
  return v;
}
inline std::string arg_word(const std::filesystem::path& v) {
  return v.string();
}
template <typename T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
std::string arg_word(const T& v) {
  return fmt::format("{}", v);
}
template <typename T>
std::string arg_word(const std::optional<T>& v) {
  return v ? arg_word(*v) : std::string();
}
template <typename T>
std::string arg_word(const std::vector<T>& v) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : ",") + arg_word(x);
  return out;
}

// The command line of `args`: the command's words, then every argument whose value differs from
// a default-constructed T's, in declaration order ("--flag value"; a flag that is true, "--flag";
// a repeated option, "--flag value" per value; a value that starts like an option,
// "--flag=value").
class ArgsWriter {
 public:
  template <typename T>
  void option(const char* flag, const T& v, const std::string&) {
    items.push_back({primary(flag), {arg_word(v)}, false});
  }
  void repeated(const char* flag, const std::vector<std::string>& v, const std::string&) {
    items.push_back({primary(flag), v, false});
  }
  void flag(const char* flag, const bool& v, const std::string& help);
  void params(const std::map<std::string, std::string>& values,
              const std::vector<DynamicOption>& declared);

  struct Item {
    std::string flag;
    std::vector<std::string> values;  // a flag's: {"1"} (given) or {"0"}
    bool is_flag = false;
  };
  std::vector<Item> items;  // in declaration order

 private:
  static std::string primary(const char* flag);  // "--jobs,-j" -> "--jobs"
};

// `command` may be several words ("corpus build").
template <typename T>
std::vector<std::string> command_line(const std::string& command, const T& args) {
  ArgsWriter have, defaults;
  const_cast<T&>(args).visit(have);
  T d{};
  d.visit(defaults);
  std::map<std::string, std::vector<std::string>> default_of;
  for (const auto& item : defaults.items) default_of[item.flag] = item.values;
  std::vector<std::string> out;
  for (size_t start = 0; start <= command.size();) {
    const size_t space = command.find(' ', start);
    out.push_back(command.substr(start, space == std::string::npos ? space : space - start));
    if (space == std::string::npos) break;
    start = space + 1;
  }
  for (const auto& item : have.items) {
    if (item.is_flag) {
      if (item.values.front() == "1") out.push_back(item.flag);
      continue;
    }
    const auto d = default_of.find(item.flag);
    if (d != default_of.end() && d->second == item.values) continue;
    for (const auto& v : item.values) {
      // A value that reads as an option ("--gres=gpu:1") is joined to its flag.
      if (v.size() > 1 && v[0] == '-' &&
          !(std::isdigit(static_cast<unsigned char>(v[1])) || v[1] == '.')) {
        out.push_back(item.flag + "=" + v);
        continue;
      }
      out.push_back(item.flag);
      out.push_back(v);
    }
  }
  return out;
}

// Reads "--flag value" pairs (and a lone "--flag" for flags) into the declared options; a word
// that is not an option, an option given twice or without a value is an error naming it.
// `allowed`, when not empty, limits the declared options that may be given here (the others are
// refused).
class ArgsReader {
 public:
  ArgsReader(std::vector<std::string> words, std::vector<std::string> allowed = {});
  void option(const char* flag, std::string& v, const std::string& help);
  void option(const char* flag, int64_t& v, const std::string& help);
  void option(const char* flag, std::vector<std::string>& v, const std::string& help);
  void option(const char* flag, std::optional<std::string>& v, const std::string& help);
  void flag(const char* flag, bool& v, const std::string& help);
  void params(std::map<std::string, std::string>& values,
              const std::vector<DynamicOption>& declared);
  // After the visit: the words no declared option took go to params() ("--NAME VALUE" each,
  // its caller checks the names); without params(), such a word is an error naming it.
  void finish();

 private:
  const std::string* take(const char* flag, bool has_value);
  bool allowed(const std::string& flag) const;
  std::vector<std::string> words_;
  std::vector<std::string> allowed_;
  std::vector<bool> used_;
  std::map<std::string, std::string>* params_ = nullptr;
};

}  // namespace btx
