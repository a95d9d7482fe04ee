#include "btx/util/args.h"

#include <fmt/format.h>

#include <algorithm>

#include "btx/util/error.h"
#include "btx/util/params.h"

namespace btx {

// ---- ArgsWriter ---------------------------------------------------------------------------------

std::string ArgsWriter::primary(const char* flag) {
  const std::string f = flag;
  return f.substr(0, f.find(','));
}

void ArgsWriter::flag(const char* flag, const bool& v, const std::string&) {
  items.push_back({primary(flag), {v ? "1" : "0"}, true});
}

void ArgsWriter::params(const std::map<std::string, std::string>& values,
                        const std::vector<DynamicOption>&) {
  for (const auto& [name, value] : values) {
    items.push_back({"--" + name, {value}, false});
  }
}

// ---- ArgsReader ---------------------------------------------------------------------------------

ArgsReader::ArgsReader(std::vector<std::string> words, std::vector<std::string> allowed)
    : words_(std::move(words)), allowed_(std::move(allowed)), used_(words_.size(), false) {
  for (size_t i = 0; i < words_.size(); ++i) {
    BTX_CHECK(words_[i].rfind("--", 0) == 0 && words_[i].size() > 2,
              "expected --PARAM VALUE pairs after the method, got '{}'", words_[i]);
    // A value follows every option; a word after an option is its value.
    if (i + 1 < words_.size() && words_[i + 1].rfind("--", 0) != 0) ++i;
  }
}

bool ArgsReader::allowed(const std::string& flag) const {
  return allowed_.empty() || std::find(allowed_.begin(), allowed_.end(), flag) != allowed_.end();
}

const std::string* ArgsReader::take(const char* flag, bool has_value) {
  const std::string* found = nullptr;
  for (size_t i = 0; i < words_.size(); ++i) {
    if (used_[i] || words_[i] != flag) continue;
    BTX_CHECK(allowed(flag), "{} cannot be given here", flag);
    BTX_CHECK(!found, "{} given twice", flag);
    used_[i] = true;
    if (!has_value) {
      static const std::string kTrue = "1";
      found = &kTrue;
      continue;
    }
    BTX_CHECK(i + 1 < words_.size() && words_[i + 1].rfind("--", 0) != 0, "{} has no value", flag);
    used_[i + 1] = true;
    found = &words_[i + 1];
  }
  return found;
}

void ArgsReader::option(const char* flag, std::string& v, const std::string&) {
  if (const auto* w = take(flag, true)) v = *w;
}

void ArgsReader::option(const char* flag, int64_t& v, const std::string&) {
  const auto* w = take(flag, true);
  if (!w) return;
  const auto x = parse_integer(*w);
  BTX_CHECK(x.has_value(), "{} '{}': expected an integer", flag, *w);
  v = *x;
}

void ArgsReader::option(const char* flag, std::vector<std::string>& v, const std::string&) {
  const auto* w = take(flag, true);
  if (!w) return;
  v.clear();
  size_t start = 0;
  while (start <= w->size()) {
    const size_t comma = w->find(',', start);
    v.push_back(w->substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
}

void ArgsReader::option(const char* flag, std::optional<std::string>& v, const std::string&) {
  if (const auto* w = take(flag, true)) v = *w;
}

void ArgsReader::flag(const char* flag, bool& v, const std::string&) {
  if (take(flag, false)) v = true;
}

void ArgsReader::params(std::map<std::string, std::string>& values,
                        const std::vector<DynamicOption>&) {
  // Every "--NAME VALUE" no declared option took: the caller checks the names (a merge checks
  // them against its method's parameters), so that the message can name what does apply.
  params_ = &values;
}

void ArgsReader::finish() {
  for (size_t i = 0; i < words_.size(); ++i) {
    if (used_[i]) continue;
    const std::string& w = words_[i];
    BTX_CHECK(params_ != nullptr, "{} is not an option here", w);
    BTX_CHECK(i + 1 < words_.size() && words_[i + 1].rfind("--", 0) != 0, "{} has no value", w);
    const std::string name = w.substr(2);
    BTX_CHECK(!params_->count(name), "{} given twice", w);
    (*params_)[name] = words_[i + 1];
    used_[i] = used_[i + 1] = true;
  }
}

}  // namespace btx
