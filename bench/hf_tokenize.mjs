// Hugging Face's tokenizer (@huggingface/tokenizers, from tests/node) timed on texts, for
// bench/tokenizer_throughput: encodes every text (no special tokens) and prints
// {"seconds", "tokens", "hash"} (FNV-1a over the ids, as the bench computes it for btx's).
//   node bench/hf_tokenize.mjs TOKENIZER_DIR TEXTS.json
import {readFileSync} from "node:fs";
import {createRequire} from "node:module";

const require = createRequire(new URL("../tests/node/package.json", import.meta.url));
const hf = await import(require.resolve("@huggingface/tokenizers"));
const Tokenizer = hf.Tokenizer ?? hf.default.Tokenizer;  // the CommonJS entry wraps it
const [dir, textsFile] = process.argv.slice(2);
const tok = new Tokenizer(JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")),
                          JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")));
const texts = JSON.parse(readFileSync(textsFile, "utf8"));
tok.encode(texts[0], {add_special_tokens: false});  // warm up
const start = process.hrtime.bigint();
const all = texts.map((t) => tok.encode(t, {add_special_tokens: false}).ids);
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
let hash = 0xcbf29ce484222325n, tokens = 0;
for (const ids of all) {
  for (const id of ids) {
    hash = ((hash ^ BigInt(id)) * 0x100000001b3n) & 0xffffffffffffffffn;
    ++tokens;
  }
}
console.log(JSON.stringify({seconds, tokens, hash: hash.toString(16)}));
