// Hugging Face's tokenizer (@huggingface/tokenizers, the tokenizer of transformers.js) on an
// exported folder's tokenizer.json and tokenizer_config.json, for btx's e2e tests.
//   node hf_tokenizer.mjs REQUEST.json      REQUEST: {"dir": "hf-export", "texts": [...]}
// Prints JSON: {"ids": [[...] per text], "decoded": [text of those ids]}.
import {readFileSync} from "node:fs";
import {Tokenizer} from "@huggingface/tokenizers";

const req = JSON.parse(readFileSync(process.argv[2], "utf8"));
const json = JSON.parse(readFileSync(`${req.dir}/tokenizer.json`, "utf8"));
const config = JSON.parse(readFileSync(`${req.dir}/tokenizer_config.json`, "utf8"));
const tok = new Tokenizer(json, config);
const ids = req.texts.map((t) => Array.from(tok.encode(t, {add_special_tokens: true}).ids));
console.log(JSON.stringify({ids, decoded: ids.map((i) => tok.decode(i))}));
