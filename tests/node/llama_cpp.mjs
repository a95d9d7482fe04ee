// Drives llama.cpp through node-llama-cpp (its prebuilt CPU binaries) for btx's e2e tests.
//   node llama_cpp.mjs REQUEST.json
// REQUEST: {"model": "x.gguf", "texts": [...], "prompts": [...], "max_tokens": N,
//           "sequences": [[token ids]], "special": false}
// Prints JSON: {"metadata": {...}, "tokens": [[ids of each text]], "continuations": [{"tokens":
// [greedy ids], "logprobs": [log-probability of each]}], "scores": [[log p(ids[i+1] | ids[..i])
// of each sequence]]}: what llama.cpp made of the file.
import {readFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

// llama.cpp's probabilities of every token, normalised again here in double precision: its own
// normalisation sums the exponentials in float32, which over a vocabulary of 128k-152k tokens
// is off by up to ~5e-4 (their sum in double is 1.0005), and that error is no part of the model.
function normalised(probabilities) {
  let total = 0;
  for (const [, p] of probabilities) total += p;
  return (t) => (probabilities.get(t) ?? 0) / total;
}

const req = JSON.parse(readFileSync(process.argv[2], "utf8"));
// "special": text that spells a special token is that token (a tokenizer.json's rule, as
// Hugging Face's tokenizers split added tokens out); else it is plain text (sentencepiece's).
const special = req.special ?? false;
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: req.model, gpuLayers: 0});
const out = {
  metadata: {
    architecture: model.fileInfo.metadata.general.architecture,
    name: model.fileInfo.metadata.general.name,
    expert_count: model.fileInfo.metadata.llama?.expert_count ?? 0,
    expert_used_count: model.fileInfo.metadata.llama?.expert_used_count ?? 0,
  },
  tokens: req.texts.map((t) => Array.from(model.tokenize(t, special))),
  continuations: [],
};
const context = await model.createContext(
    {contextSize: 256, batchSize: 256, threads: 2, flashAttention: false,
     experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32", sequences: Math.max(1, req.prompts.length + (req.sequences ?? []).length)});
for (const prompt of req.prompts) {
  const sequence = context.getSequence();
  const tokens = Array.from(model.tokenize(prompt, special));
  const ids = [], logprobs = [];
  let input = tokens;
  for (let i = 0; i < req.max_tokens; ++i) {
    // Greedy: the most probable next token, with the whole distribution to read its probability.
    const res = await sequence.controlledEvaluate(
        input.map((t, k) => k + 1 === input.length ? [t, {generateNext: {probabilities: true}}] : t));
    const probs = res[input.length - 1].next.probabilities;
    let best = -1, bestP = -1;
    for (const [t, p] of probs) if (p > bestP) { best = t; bestP = p; }
    ids.push(best);
    logprobs.push(Math.log(normalised(probs)(best)));
    input = [best];
  }
  out.continuations.push({tokens: ids, logprobs});
  sequence.dispose();
}
// Teacher-forced: every position's distribution, read at the token that follows.
out.scores = [];
for (const ids of req.sequences ?? []) {
  const sequence = context.getSequence();
  const res = await sequence.controlledEvaluate(
      ids.map((t, k) => k + 1 < ids.length ? [t, {generateNext: {probabilities: true}}] : t));
  const lp = [];
  for (let k = 0; k + 1 < ids.length; ++k) lp.push(Math.log(normalised(res[k].next.probabilities)(ids[k + 1])));
  out.scores.push(lp);
  sequence.dispose();
}
console.log(JSON.stringify(out));
await context.dispose();
await model.dispose();
