// Hugging Face's tokenizer (@huggingface/tokenizers, the tokenizer of transformers.js) on a
// folder's tokenizer.json and tokenizer_config.json, for btx's e2e tests.
//   node hf_tokenizer.mjs REQUEST.json
//   REQUEST: {"dir": "hf-export", "texts": [...], "add_special_tokens": true (default),
//             "clean_up_tokenization_spaces": the config's (default)}
// Prints JSON: {"ids": [[...] per text], "decoded": [text of those ids]}.
import {readFileSync} from "node:fs";
import {Tokenizer} from "@huggingface/tokenizers";

const req = JSON.parse(readFileSync(process.argv[2], "utf8"));
const json = JSON.parse(readFileSync(`${req.dir}/tokenizer.json`, "utf8"));
const config = JSON.parse(readFileSync(`${req.dir}/tokenizer_config.json`, "utf8"));
const tok = new Tokenizer(json, config);
const add_special_tokens = req.add_special_tokens ?? true;
const ids = req.texts.map((t) => Array.from(tok.encode(t, {add_special_tokens}).ids));
const options = {};
if ("clean_up_tokenization_spaces" in req) {
  options.clean_up_tokenization_spaces = req.clean_up_tokenization_spaces;
}
const decoded = ids.map((i) => (i.length ? tok.decode(i, options) : ""));
console.log(JSON.stringify({ids, decoded}));
