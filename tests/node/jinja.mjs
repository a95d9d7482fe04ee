// Renders a chat template with Hugging Face's Jinja (@huggingface/jinja, what transformers.js
// uses for apply_chat_template), for btx's e2e tests.
//   node jinja.mjs REQUEST.json
// REQUEST: {"template": "...", "cases": [{"messages": [...], "add_generation_prompt": bool}]}
// Prints JSON: {"rendered": [text, or {"error": message} where rendering threw]}.
import {readFileSync} from "node:fs";
import {Template} from "@huggingface/jinja";

const req = JSON.parse(readFileSync(process.argv[2], "utf8"));
const template = new Template(req.template);
const rendered = req.cases.map((c) => {
  try {
    return template.render({messages: c.messages, add_generation_prompt: c.add_generation_prompt,
                            bos_token: "<s>", eos_token: "</s>"});
  } catch (e) {
    return {error: String(e.message ?? e)};
  }
});
console.log(JSON.stringify({rendered}));
