#include "btx/data/chat_template.h"

#include "btx/data/jinja.h"
#include "btx/data/tokenizer_config.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

// A Jinja string literal of `s` (single-quoted; escapes as Python's).
std::string jinja_literal(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\'':
        out += "\\'";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += c;
    }
  }
  return out + "'";
}

ChatTemplate from_json(const nlohmann::json& j, const std::string& where) {
  BTX_CHECK(j.is_object(), "{}: a chat template is a JSON object", where);
  for (const auto& [k, v] : j.items()) {
    BTX_CHECK(k == "roles" || k == "generation_prompt" || k == "stop",
              "{}: unknown key \"{}\" (expected roles, generation_prompt, stop)", where, k);
  }
  ChatTemplate t;
  t.name = where;
  BTX_CHECK(j.contains("roles") && j["roles"].is_object() && !j["roles"].empty(),
            "{}: \"roles\" must be an object of roles, each {{\"prefix\": ..., \"suffix\": ...}}",
            where);
  for (const auto& [role, r] : j["roles"].items()) {
    BTX_CHECK(r.is_object(), "{}: roles.{} must be an object with prefix and suffix", where, role);
    ChatTemplate::Role out;
    for (const auto& [k, v] : r.items()) {
      BTX_CHECK((k == "prefix" || k == "suffix") && v.is_string(),
                "{}: roles.{}.{}: expected the strings prefix and suffix", where, role, k);
      (k == "prefix" ? out.prefix : out.suffix) = v.get<std::string>();
    }
    t.roles[role] = out;
  }
  for (const char* role : {"user", "assistant"}) {
    BTX_CHECK(t.roles.count(role), "{}: roles has no \"{}\"", where, role);
  }
  BTX_CHECK(j.contains("generation_prompt") && j["generation_prompt"].is_string(),
            "{}: \"generation_prompt\" must be a string", where);
  t.generation_prompt = j["generation_prompt"];
  if (j.contains("stop")) {
    BTX_CHECK(j["stop"].is_array(), "{}: \"stop\" must be an array of strings", where);
    for (const auto& s : j["stop"]) {
      BTX_CHECK(s.is_string() && !s.get<std::string>().empty(),
                "{}: \"stop\" must hold non-empty strings", where);
      t.stop.push_back(s);
    }
  }
  return t;
}

}  // namespace

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) const {
  if (model_template) {
    nlohmann::ordered_json context = template_variables;
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
    context["messages"] = list;
    context["add_generation_prompt"] = add_generation_prompt;
    return model_template->render(context);
  }
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto it = roles.find(messages[i].role);
    BTX_CHECK(!roles.empty(), "the model has no chat template (give one with --chat-template)");
    BTX_CHECK(it != roles.end(), "messages[{}].role: unknown role \"{}\" (chat template {} has {})",
              i, messages[i].role, name, fmt::join(role_names(), ", "));
    out += it->second.prefix + messages[i].content + it->second.suffix;
  }
  if (add_generation_prompt) out += generation_prompt;
  return out;
}

std::vector<std::string> ChatTemplate::role_names() const {
  std::vector<std::string> out;
  for (const auto& [r, _] : roles) out.push_back(r);
  return out;
}

std::string ChatTemplate::jinja() const {
  if (model_template) return model_template_source;
  if (roles.empty()) return "";
  std::string out = "{%- for message in messages -%}";
  bool first = true;
  for (const auto& [role, r] : roles) {
    out += first ? "{%- if " : "{%- elif ";
    first = false;
    out += "message['role'] == " + jinja_literal(role) + " -%}{{ " + jinja_literal(r.prefix) +
           " + message['content'] + " + jinja_literal(r.suffix) + " }}";
  }
  out +=
      "{%- else -%}{{ raise_exception('unknown role: ' + message['role']) }}{%- endif -%}"
      "{%- endfor -%}{%- if add_generation_prompt -%}{{ " +
      jinja_literal(generation_prompt) + " }}{%- endif -%}";
  return out;
}

nlohmann::json ChatTemplate::to_json() const {
  if (model_template) return {{"jinja", model_template_source}};
  nlohmann::json r = nlohmann::json::object();
  for (const auto& [role, x] : roles) r[role] = {{"prefix", x.prefix}, {"suffix", x.suffix}};
  return {{"roles", r}, {"generation_prompt", generation_prompt}, {"stop", stop}};
}

ChatTemplate builtin_chat_template(const std::string& name) {
  nlohmann::json j;
  if (name == "plain") {
    j = {{"roles",
          {{"system", {{"prefix", ""}, {"suffix", "\n\n"}}},
           {"user", {{"prefix", "User: "}, {"suffix", "\n\n"}}},
           {"assistant", {{"prefix", "Assistant: "}, {"suffix", "\n\n"}}}}},
         {"generation_prompt", "Assistant:"},
         {"stop", {"\nUser:", "\nAssistant:"}}};
  } else if (name == "chatml") {
    auto role = [](const std::string& r) {
      return nlohmann::json{{"prefix", "<|im_start|>" + r + "\n"}, {"suffix", "<|im_end|>\n"}};
    };
    j = {{"roles",
          {{"system", role("system")}, {"user", role("user")}, {"assistant", role("assistant")}}},
         {"generation_prompt", "<|im_start|>assistant\n"},
         {"stop", {"<|im_end|>"}}};
  } else {
    fail("chat template '{}': expected plain, chatml or a JSON template file", name);
  }
  ChatTemplate t = from_json(j, name);
  t.name = name;
  return t;
}

namespace {

// A model's template from its Jinja source; `variables` from its tokenizer_config.json.
ChatTemplate model_chat_template(const std::string& source, const std::string& name,
                                 nlohmann::ordered_json variables) {
  ChatTemplate t;
  t.name = name;
  t.model_template = std::make_shared<const jinja::Template>(jinja::Template::parse(source, name));
  t.model_template_source = source;
  t.template_variables = std::move(variables);
  return t;
}

}  // namespace

ChatTemplate load_chat_template(const std::string& name_or_file) {
  if (name_or_file == "none") {
    ChatTemplate none;
    none.name = "none";
    return none;
  }
  if (name_or_file == "plain" || name_or_file == "chatml") {
    return builtin_chat_template(name_or_file);
  }
  BTX_CHECK(fs::is_regular_file(name_or_file),
            "chat template '{}': not plain, chatml or none, and no such file", name_or_file);
  if (fs::path(name_or_file).extension() == ".jinja") {
    return model_chat_template(read_file(name_or_file), name_or_file,
                               nlohmann::ordered_json::object());
  }
  const nlohmann::json j = read_json_file(name_or_file);
  if (!j.is_object() || !j.contains("chat_template")) return from_json(j, name_or_file);
  // A model's tokenizer_config.json.
  const auto& ct = j["chat_template"];
  std::string source;
  if (ct.is_string()) {
    source = ct.get<std::string>();
  } else if (ct.is_array()) {
    std::vector<std::string> names;
    for (const auto& entry : ct) {
      BTX_CHECK(entry.is_object() && entry.contains("name") && entry.contains("template") &&
                    entry["name"].is_string() && entry["template"].is_string(),
                "{}: chat_template entries are {{\"name\", \"template\"}} objects", name_or_file);
      names.push_back(entry["name"].get<std::string>());
      if (names.back() == "default") source = entry["template"].get<std::string>();
    }
    BTX_CHECK(!source.empty(), "{}: chat_template has no template named \"default\" (it has {})",
              name_or_file, fmt::join(names, ", "));
  } else {
    fail("{}: chat_template is {}; expected a Jinja template (a string)", name_or_file, ct.dump());
  }
  nlohmann::ordered_json variables = nlohmann::ordered_json::object();
  for (const char* key : {"bos_token", "eos_token"}) {
    variables[key] = special_token_text(j, key, name_or_file).value_or("");
  }
  return model_chat_template(source, name_or_file + " chat_template", std::move(variables));
}

std::optional<ChatTemplate> tokenizer_chat_template(const fs::path& tokenizer_file) {
  if (tokenizer_file.extension() != ".json") return std::nullopt;
  const fs::path config = tokenizer_file.parent_path() / "tokenizer_config.json";
  if (!fs::exists(config)) return std::nullopt;
  const nlohmann::json j = read_json_file(config);
  if (!j.is_object() || !j.contains("chat_template")) return std::nullopt;
  return load_chat_template(config.string());
}

ChatTemplate resolve_chat_template(const std::string& name_or_file,
                                   const fs::path& tokenizer_file) {
  if (!name_or_file.empty()) return load_chat_template(name_or_file);
  auto own = tokenizer_chat_template(tokenizer_file);
  return own ? std::move(*own) : builtin_chat_template("plain");
}

}  // namespace btx
