// Reading a tokenizer.json's parts (hf_tokenizer.cpp): each value checked, and what btx does not
// implement refused with the file, the JSON path and the value. Internal to data/.
#pragma once

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "btx/data/hf_tokenizer.h"
#include "btx/util/error.h"

namespace btx::hf {

// Reads one tokenizer.json, with the file's name and each value's JSON path in its errors.
using json = nlohmann::json;

struct Reader {
  const fs::path& file;

  [[noreturn]] void refuse(const std::string& path, const json& v,
                           const std::string& expected) const {
    std::string shown = v.dump(-1, ' ', false, json::error_handler_t::replace);
    if (shown.size() > 80) shown = shown.substr(0, 77) + "...";
    fail("{}: {} is {}; {}", file.string(), path, shown, expected);
  }
  const json& at(const json& obj, const std::string& path, const char* key) const {
    if (!obj.is_object()) refuse(path, obj, "expected an object");
    const auto it = obj.find(key);
    if (it == obj.end()) fail("{}: {} has no \"{}\"", file.string(), path, key);
    return *it;
  }
  std::string text(const json& obj, const std::string& path, const char* key) const {
    const json& v = at(obj, path, key);
    if (!v.is_string()) refuse(path + "." + key, v, "expected a string");
    return v.get<std::string>();
  }
  bool flag(const json& obj, const std::string& path, const char* key, bool fallback) const {
    if (!obj.contains(key) || obj.at(key).is_null()) return fallback;
    const json& v = obj.at(key);
    if (!v.is_boolean()) refuse(path + "." + key, v, "expected true or false");
    return v.get<bool>();
  }
  std::string type(const json& obj, const std::string& path) const {
    return text(obj, path, "type");
  }
  // A string pattern: {"String": s} or {"Regex": r}.
  std::pair<std::string, bool> pattern(const json& obj, const std::string& path) const {
    const json& p = at(obj, path, "pattern");
    if (p.is_object() && p.size() == 1 && p.contains("String") && p["String"].is_string()) {
      return {p["String"].get<std::string>(), false};
    }
    if (p.is_object() && p.size() == 1 && p.contains("Regex") && p["Regex"].is_string()) {
      return {p["Regex"].get<std::string>(), true};
    }
    refuse(path + ".pattern", p, "expected {\"String\": ...} or {\"Regex\": ...}");
  }

  void normalizer(const json& n, const std::string& path, Pipeline& p) const {
    if (n.is_null()) return;
    const std::string t = type(n, path);
    if (t == "Sequence") {
      const json& list = at(n, path, "normalizers");
      if (!list.is_array()) refuse(path + ".normalizers", list, "expected a list");
      for (size_t i = 0; i < list.size(); ++i) {
        normalizer(list[i], fmt::format("{}.normalizers[{}]", path, i), p);
      }
    } else if (t == "NFC") {
      p.normalizer.push_back({NormalizerStep::kNfc, "", ""});
    } else if (t == "Prepend") {
      p.normalizer.push_back({NormalizerStep::kPrepend, text(n, path, "prepend"), ""});
    } else if (t == "Replace") {
      const auto [pat, regex] = pattern(n, path);
      if (regex) refuse(path + ".pattern", n.at("pattern"), "btx implements Replace of a String");
      p.normalizer.push_back({NormalizerStep::kReplace, pat, text(n, path, "content")});
    } else {
      refuse(path + ".type", t,
             "btx implements the normalizers NFC, Prepend, Replace and Sequence (others would be "
             "tokenized approximately, so they are refused)");
    }
  }

  void pre_tokenizer(const json& n, const std::string& path, Pipeline& p) const {
    if (n.is_null()) return;
    const std::string t = type(n, path);
    PreTokenizerStep s{};
    if (t == "Sequence") {
      const json& list = at(n, path, "pretokenizers");
      if (!list.is_array()) refuse(path + ".pretokenizers", list, "expected a list");
      for (size_t i = 0; i < list.size(); ++i) {
        pre_tokenizer(list[i], fmt::format("{}.pretokenizers[{}]", path, i), p);
      }
      return;
    } else if (t == "Split") {
      s.kind = PreTokenizerStep::kSplit;
      const auto [pat, regex] = pattern(n, path);
      if (regex) {
        s.pattern = pat;
        s.regex = compile_regex(pat, file.string() + ": " + path + ".pattern.Regex");
      } else {
        s.literal = pat;
      }
      const std::string behavior = text(n, path, "behavior");
      if (behavior != "Isolated") {
        refuse(path + ".behavior", behavior, "btx implements the Split behavior Isolated");
      }
      if (flag(n, path, "invert", false)) refuse(path + ".invert", true, "btx implements false");
    } else if (t == "ByteLevel") {
      s.kind = PreTokenizerStep::kByteLevel;
      s.add_prefix_space = flag(n, path, "add_prefix_space", true);
      if (flag(n, path, "use_regex", true)) {
        s.pattern = kGpt2Pattern;
        s.regex = compile_regex(kGpt2Pattern, file.string() + ": " + path);
      }
      p.byte_level = true;
    } else if (t == "Digits") {
      s.kind = PreTokenizerStep::kDigits;
      s.individual_digits = flag(n, path, "individual_digits", false);
    } else if (t == "Metaspace") {
      s.kind = PreTokenizerStep::kMetaspace;
      s.replacement = text(n, path, "replacement");
      s.split = flag(n, path, "split", true);
      if (n.contains("prepend_scheme")) {
        const std::string scheme = text(n, path, "prepend_scheme");
        if (scheme == "always") {
          s.prepend = PreTokenizerStep::kAlways;
        } else if (scheme == "first") {
          s.prepend = PreTokenizerStep::kFirst;
        } else if (scheme == "never") {
          s.prepend = PreTokenizerStep::kNever;
        } else {
          refuse(path + ".prepend_scheme", scheme, "expected always, first or never");
        }
      } else {  // older files: add_prefix_space
        s.prepend = flag(n, path, "add_prefix_space", true) ? PreTokenizerStep::kAlways
                                                            : PreTokenizerStep::kNever;
      }
    } else {
      refuse(path + ".type", t,
             "btx implements the pre-tokenizers Split, ByteLevel, Digits, Metaspace and "
             "Sequence (others would be tokenized approximately, so they are refused)");
    }
    p.pre_tokenizer.push_back(std::move(s));
  }

  // The post-processor only matters for its BOS (btx adds special tokens itself).
  void post_processor(const json& n, const std::string& path, const Pipeline& p, int32_t& bos,
                      bool& adds_bos) const {
    if (n.is_null()) return;
    const std::string t = type(n, path);
    if (t == "Sequence") {
      const json& list = at(n, path, "processors");
      if (!list.is_array()) refuse(path + ".processors", list, "expected a list");
      for (size_t i = 0; i < list.size(); ++i) {
        post_processor(list[i], fmt::format("{}.processors[{}]", path, i), p, bos, adds_bos);
      }
    } else if (t == "TemplateProcessing") {
      const json& single = at(n, path, "single");
      if (!single.is_array() || single.empty()) refuse(path + ".single", single, "expected a list");
      const json& first = single[0];
      if (first.is_object() && first.contains("SpecialToken")) {
        const std::string name =
            text(first["SpecialToken"], path + ".single[0].SpecialToken", "id");
        bos = p.token_id(name);
        if (bos < 0) {
          refuse(path + ".single[0].SpecialToken.id", name, "expected a token of the vocabulary");
        }
        adds_bos = true;
      }
    } else if (t != "ByteLevel") {
      refuse(path + ".type", t,
             "btx reads the post-processors ByteLevel, TemplateProcessing and Sequence");
    }
  }
};

}  // namespace btx::hf
