// How a conversation becomes the text a model continues: each message is written as its role's
// prefix, the content and the role's suffix, in order; a reply is asked for with the generation
// prompt, and ends at one of the stop strings (the next turn's start) or the end-of-text token.
// btx renders it itself (the server) and writes it as the Jinja `chat_template` that Hugging
// Face tools, llama.cpp and Ollama render (the exports); the two give the same text (tested with
// Hugging Face's Jinja implementation).
//
// A model's own template -- the Jinja `chat_template` of its tokenizer_config.json, or a .jinja
// file -- is rendered by btx's Jinja engine (jinja.h) exactly as Hugging Face renders it, with
// `messages`, `add_generation_prompt` and the config's bos_token and eos_token; which roles it
// takes is the template's business (an unknown one is its raise_exception), and a reply ends at
// the model's end-of-text token.
//
// Built in: "plain" (the default; plain text, what a model trained on ordinary text continues
// best):
//     System: You are terse.\n\nUser: Hello\n\nAssistant: Hi.\n\nUser: ...\n\nAssistant:
// and "chatml" (<|im_start|>role\n...<|im_end|>\n). A template file is JSON:
//     {"roles": {"system": {"prefix": "", "suffix": "\n\n"}, "user": {...}, "assistant": {...}},
//      "generation_prompt": "Assistant:", "stop": ["\nUser:"]}
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace btx {

namespace jinja {
class Template;  // jinja.h
}  // namespace jinja

struct ChatMessage {
  std::string role;  // a role of the template: system, user, assistant
  std::string content;
};

struct ChatTemplate {
  struct Role {
    std::string prefix, suffix;
  };
  std::string name;                   // "plain", "chatml", or the file it was read from
  std::map<std::string, Role> roles;  // by role name
  std::string generation_prompt;      // what the model's reply follows
  std::vector<std::string> stop;      // a reply ends before any of these
  // A model's own Jinja template (then `roles` is empty), its source as it came, and the
  // variables it gets besides the conversation (bos_token, eos_token).
  std::shared_ptr<const jinja::Template> model_template;
  std::string model_template_source;
  nlohmann::ordered_json template_variables = nlohmann::ordered_json::object();

  // No template at all ("none").
  bool empty() const { return roles.empty() && !model_template; }
  // Whether a message of `role` can be rendered (a model's template decides when rendering).
  bool has_role(const std::string& role) const { return model_template || roles.count(role) > 0; }

  // The conversation's text; a message of a role the template lacks is an error naming its
  // index and role (a model's template: what its raise_exception says, with its line).
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // The same as a Jinja template over `messages` and `add_generation_prompt` (HF's variables);
  // an unknown role raises an exception naming it. "" for "none"; a model's own template as it
  // came.
  std::string jinja() const;
  nlohmann::json to_json() const;
  std::vector<std::string> role_names() const;  // sorted
};

// "plain" or "chatml"; anything else is an error listing them.
ChatTemplate builtin_chat_template(const std::string& name);
// A built-in name, "none" (no template: render() is an error, jinja() is ""), a JSON template
// file (keys above; unknown keys and missing roles are errors naming the file), a model's
// tokenizer_config.json (its chat_template: a string, or the one named "default" of a list),
// or a .jinja file. A Jinja construct btx does not implement is refused here, naming it.
ChatTemplate load_chat_template(const std::string& name_or_file);
// The template a model's tokenizer brings: the chat_template of the tokenizer_config.json beside
// a tokenizer.json; none for a sentencepiece tokenizer.model or a config without one.
std::optional<ChatTemplate> tokenizer_chat_template(const std::filesystem::path& tokenizer_file);
// `name_or_file` when it is not empty, else the tokenizer's own template, else "plain": what
// --chat-template means in serve and export.
ChatTemplate resolve_chat_template(const std::string& name_or_file,
                                   const std::filesystem::path& tokenizer_file);

}  // namespace btx
