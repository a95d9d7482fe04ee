#include "btx/config/run_config.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "btx/config/toml_reader.h"
#include "btx/util/error.h"

namespace btx {

void TrainConfig::validate(const std::string& where) const {
  auto positive = [&](const char* key, int64_t x) {
    BTX_CHECK(x > 0, "{}: {} must be positive, got {}", where, key, x);
  };
  positive("steps", steps);
  positive("batch_size", batch_size);
  positive("seq_len", seq_len);
  positive("grad_accum", grad_accum);
  positive("eval_every", eval_every);
  positive("eval_tokens", eval_tokens);
  positive("log_every", log_every);
  positive("checkpoint_every", checkpoint_every);
  BTX_CHECK(lr > 0 && min_lr >= 0 && min_lr <= lr,
            "{}: need lr > 0 and 0 <= min_lr <= lr (got lr={}, min_lr={})", where, lr, min_lr);
  BTX_CHECK(warmup_steps >= 0, "{}: warmup_steps must be >= 0", where);
  BTX_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1,
            "{}: beta1 and beta2 must be in [0, 1)", where);
  BTX_CHECK(weight_decay >= 0 && grad_clip >= 0 && eps > 0,
            "{}: weight_decay and grad_clip must be >= 0, eps > 0", where);
  for (auto& [k, w] : domain_weights) {
    BTX_CHECK(w >= 0, "{}: domain_weights.{} must be >= 0, got {}", where, k, w);
  }
  BTX_CHECK(threads >= 0, "{}: threads must be >= 0", where);
  // Maxima, checked before anything is allocated: a typo of a few zeros would otherwise run for
  // minutes before LibTorch's allocator fails naming nothing.
  auto at_most = [&](const char* key, int64_t x, int64_t max) {
    BTX_CHECK(x <= max, "{}: {} = {} is above the maximum {}", where, key, x, max);
  };
  at_most("steps", steps, 1'000'000'000);
  at_most("batch_size", batch_size, 65'536);
  at_most("seq_len", seq_len, 1 << 20);
  at_most("grad_accum", grad_accum, 65'536);
  at_most("eval_tokens", eval_tokens, 10'000'000'000);
  at_most("threads", threads, 4096);
  BTX_CHECK(batch_size * seq_len <= (int64_t{1} << 22),
            "{}: batch_size x seq_len = {} x {} = {} tokens per micro-batch, above the maximum {} "
            "(use grad_accum for larger batches)",
            where, batch_size, seq_len, batch_size * seq_len, int64_t{1} << 22);
  for (const auto& [key, x] : {std::pair<const char*, double>{"lr", lr},
                               {"min_lr", min_lr},
                               {"weight_decay", weight_decay},
                               {"grad_clip", grad_clip},
                               {"eps", eps}}) {
    BTX_CHECK(std::isfinite(x), "{}: {} must be a finite number, got {}", where, key, x);
  }
}

namespace {
RunConfig run_config_from_table(const toml::table& table, const std::string& where) {
  RunConfig c;
  TomlReader r(&table, where, "");
  c.visit(r);
  BTX_CHECK(c.format_version <= kRunFormatVersion,
            "{}: format_version {} was written by a newer btx (this one reads up to {})", where,
            c.format_version, kRunFormatVersion);
  BTX_CHECK(c.format_version >= 1, "{}: format_version must be >= 1", where);
  BTX_CHECK(!c.name.empty(), "{}: name must not be empty", where);
  BTX_CHECK(c.tokenizer.vocab_size >= 260,
            "{}: tokenizer.vocab_size must be >= 260 (256 byte pieces + specials), got {}", where,
            c.tokenizer.vocab_size);
  BTX_CHECK(c.data.train_tokens > 0 && c.data.valid_tokens > 0 && c.data.test_tokens > 0 &&
                c.data.chunk_bytes >= 256,
            "{}: data token budgets must be positive and chunk_bytes >= 256", where);
  if (c.model.vocab_size == 0) c.model.vocab_size = c.tokenizer.vocab_size;
  BTX_CHECK(c.model.vocab_size == c.tokenizer.vocab_size,
            "{}: model.vocab_size {} differs from tokenizer.vocab_size {} (leave it out)", where,
            c.model.vocab_size, c.tokenizer.vocab_size);
  c.model.validate(where + " [model]");
  c.seed_train.validate(where + " [seed]");
  c.experts.train.validate(where + " [experts.train]");
  c.finetune.validate(where + " [finetune]");
  BTX_CHECK(c.experts.split == "domain" || c.experts.split == "random",
            "{}: experts.split must be \"domain\" or \"random\", got \"{}\"", where,
            c.experts.split);
  BTX_CHECK(c.experts.count >= 0, "{}: experts.count must be >= 0", where);
  BTX_CHECK(c.experts.train.seq_len <= c.model.max_sequence(),
            "{}: experts.train.seq_len {} exceeds the model's longest sequence {} "
            "(max_position_embeddings, or sliding_window)",
            where, c.experts.train.seq_len, c.model.max_sequence());
  std::set<std::string> names;
  for (const auto& e : c.experts.custom) {
    BTX_CHECK(!e.name.empty() &&
                  e.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
                      std::string::npos &&
                  e.name[0] != '.',
              "{}: expert name '{}' must be letters, digits, '_', '-' or '.'", where, e.name);
    BTX_CHECK(names.insert(e.name).second, "{}: expert name '{}' appears twice", where, e.name);
    BTX_CHECK(!e.domains.empty(), "{}: expert '{}' has no domains", where, e.name);
  }
  BTX_CHECK(c.seed_train.seq_len <= c.model.max_sequence(),
            "{}: seed.seq_len {} exceeds the model's longest sequence {} (max_position_embeddings, "
            "or sliding_window)",
            where, c.seed_train.seq_len, c.model.max_sequence());
  BTX_CHECK(c.study.launcher == "local" || c.study.launcher == "slurm",
            "{}: study.launcher must be \"local\" or \"slurm\", got \"{}\"", where,
            c.study.launcher);
  std::set<ExpertMode> modes;  // each read as a name of the table (TomlReader)
  for (size_t i = 0; i < c.study.modes.size(); ++i) {
    const std::string key = fmt::format("{} study.modes[{}]", where, i);
    const ExpertMode mode = c.study.modes[i];
    BTX_CHECK(mode != c.experts.mode,
              "{}: '{}' is the main experts' mode ([experts] mode): its rows are the study's own",
              key, name_of(mode));
    BTX_CHECK(modes.insert(mode).second, "{}: '{}' appears twice", key, name_of(mode));
  }
  BTX_CHECK(c.study.jobs >= 1, "{}: study.jobs must be >= 1, got {}", where, c.study.jobs);
  BTX_CHECK(c.study.clusters == 0 || c.study.clusters >= 2,
            "{}: study.clusters must be 0 (none) or at least 2, got {}", where, c.study.clusters);
  return c;
}
}  // namespace

RunConfig parse_run_config(const std::string& toml_text, const std::string& where) {
  try {
    return run_config_from_table(toml::parse(toml_text, where), where);
  } catch (const toml::parse_error& e) {
    fail("{}:{}:{}: {}", where, e.source().begin.line, e.source().begin.column, e.description());
  }
}

RunConfig load_run_config(const fs::path& path) {
  return run_config_from_table(parse_toml_file(path.string()), path.string());
}

std::string run_config_to_toml(const RunConfig& c) {
  toml::table table;
  TomlWriter w(&table);
  const_cast<RunConfig&>(c).visit(w);
  // Strings in double quotes with escapes only (found by fuzz/run_config_fuzz.cpp): toml++ 3.3
  // writes a string that starts with a newline in triple quotes, where a reader drops that
  // newline, and one holding a newline as a literal string, which may not hold one.
  const auto flags =
      toml::toml_formatter::default_flags &
      ~(toml::format_flags::allow_multi_line_strings | toml::format_flags::allow_literal_strings);
  auto write = [&](toml::format_flags f) {
    std::ostringstream out;
    out << "# Resolved btx run config: every key with its value, defaults included.\n"
        << toml::toml_formatter(table, f) << "\n";
    return out.str();
  };
  // Floats as short as they read (0.1, not 0.10000000000000001), unless that loses a digit
  // (4444440.1 became 4444440: the run's config no longer read as itself; also found by fuzzing).
  const std::string compact = write(flags | toml::format_flags::relaxed_float_precision);
  if (differing_keys(c, parse_run_config(compact, "the resolved config")).empty()) return compact;
  return write(flags);
}

RunConfig set_run_config_value(const RunConfig& c, const std::string& key, const std::string& value,
                               const std::string& where) {
  toml::table table;
  TomlWriter w(&table);
  const_cast<RunConfig&>(c).visit(w);
  auto unknown = [&] {
    fail("{}: unknown config key '{}' (`btx run --print-config` lists every key)", where, key);
  };
  toml::table* t = &table;
  std::string rest = key;
  for (size_t dot; (dot = rest.find('.')) != std::string::npos;) {
    toml::node* n = t->get(rest.substr(0, dot));
    if (!n || !n->is_table()) unknown();
    t = n->as_table();
    rest = rest.substr(dot + 1);
  }
  toml::node* leaf = t->get(rest);
  if (!leaf || leaf->is_table()) unknown();
  toml::table parsed;
  bool parses = true;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    parses = false;
  }
  const toml::node* v = parses ? parsed.get("v") : nullptr;
  const char* type = leaf->is_string()           ? "a string"
                     : leaf->is_integer()        ? "an integer"
                     : leaf->is_floating_point() ? "a number"
                     : leaf->is_boolean()        ? "true or false"
                                                 : "an array";
  auto wrong = [&] {
    fail("{}: expected {} for {} (as its current value, {})", where, type, key,
         run_config_keys(c).at(key));
  };
  if (leaf->is_string()) {
    // Bare text is the string itself; a quoted TOML string is read as TOML.
    t->insert_or_assign(rest, v && v->is_string() ? v->as_string()->get() : value);
  } else if (!v) {
    wrong();
  } else if (leaf->is_integer()) {
    if (!v->is_integer()) wrong();
    t->insert_or_assign(rest, v->as_integer()->get());
  } else if (leaf->is_floating_point()) {
    if (!v->is_number()) wrong();
    t->insert_or_assign(rest, v->value<double>().value());
  } else if (leaf->is_boolean()) {
    if (!v->is_boolean()) wrong();
    t->insert_or_assign(rest, v->as_boolean()->get());
  } else {
    if (!v->is_array()) wrong();
    t->insert_or_assign(rest, *v->as_array());
  }
  return run_config_from_table(table, where);
}

namespace {
void flatten(const toml::table& t, const std::string& prefix,
             std::map<std::string, std::string>& out) {
  for (const auto& [k, v] : t) {
    const std::string key =
        prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const auto* sub = v.as_table()) {
      flatten(*sub, key, out);
    } else {
      std::ostringstream text;
      if (const auto* a = v.as_array()) {
        text << toml::toml_formatter(*a);
      } else {
        v.visit([&](const auto& x) { text << toml::toml_formatter(x); });
      }
      out[key] = text.str();
    }
  }
}
}  // namespace

const std::vector<Named<ExpertMode>>& names(ExpertMode) {
  static const std::vector<Named<ExpertMode>> table = {
      {ExpertMode::kAll, "all"}, {ExpertMode::kFfn, "ffn"}, {ExpertMode::kFlexolmo, "flexolmo"}};
  return table;
}

std::map<std::string, std::string> run_config_keys(const RunConfig& c) {
  toml::table table;
  TomlWriter w(&table);
  const_cast<RunConfig&>(c).visit(w);
  std::map<std::string, std::string> out;
  flatten(table, "", out);
  return out;
}

std::vector<std::string> differing_keys(const std::map<std::string, std::string>& ka,
                                        const std::map<std::string, std::string>& kb) {
  std::vector<std::string> out;
  for (const auto& [k, v] : ka) {
    auto it = kb.find(k);
    if (it == kb.end() || it->second != v) out.push_back(k);
  }
  for (const auto& [k, v] : kb) {
    if (!ka.count(k)) out.push_back(k);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> differing_keys(const RunConfig& a, const RunConfig& b) {
  return differing_keys(run_config_keys(a), run_config_keys(b));
}

}  // namespace btx
