// The official OpenAI client (npm `openai`) against `btx serve`, for btx's e2e tests.
//   node openai_client.mjs REQUEST.json
// REQUEST: {"base_url": "http://127.0.0.1:PORT/v1", "model": id, "prompt": text,
//           "messages": [...], "score": [texts], "logit_bias": {"id": bias}}
// Runs every call a client makes (completions and chat, whole and streamed; logprobs; echo with
// max_tokens 0 as lm-evaluation-harness scores text; n; penalties and logit_bias; refusals) and prints what came back as
// JSON, for the test to check against btx.
import {readFileSync} from "node:fs";
import OpenAI from "openai";

const req = JSON.parse(readFileSync(process.argv[2], "utf8"));
const client = new OpenAI({baseURL: req.base_url, apiKey: "unused", maxRetries: 0});
const greedy = {model: req.model, temperature: 0, max_tokens: 8};
const out = {};

out.models = (await client.models.list()).data.map((m) => m.id);

let r = await client.completions.create({...greedy, prompt: req.prompt});
out.completion = {text: r.choices[0].text, finish: r.choices[0].finish_reason, usage: r.usage};

let text = "", usage = null, chunks = 0;
for await (const c of await client.completions.create(
    {...greedy, prompt: req.prompt, stream: true, stream_options: {include_usage: true}})) {
  if (c.choices.length) text += c.choices[0].text;
  if (c.usage) usage = c.usage;
  ++chunks;
}
out.completion_stream = {text, usage, chunks};

r = await client.chat.completions.create({...greedy, messages: req.messages});
out.chat = {content: r.choices[0].message.content, role: r.choices[0].message.role,
            finish: r.choices[0].finish_reason, usage: r.usage, object: r.object};

let content = "", role = null;
for await (const c of await client.chat.completions.create(
    {...greedy, messages: req.messages, stream: true})) {
  const d = c.choices[0]?.delta ?? {};
  if (d.role) role = d.role;
  if (d.content) content += d.content;
}
out.chat_stream = {content, role};

r = await client.completions.create({...greedy, prompt: req.prompt, max_tokens: 4, logprobs: 3});
out.logprobs = r.choices[0].logprobs;
out.logprobs_text = r.choices[0].text;

r = await client.chat.completions.create(
    {...greedy, messages: req.messages, max_tokens: 4, logprobs: true, top_logprobs: 2});
out.chat_logprobs = r.choices[0].logprobs;

// lm-evaluation-harness's loglikelihood request: a batch of texts, echoed and scored, nothing new.
r = await client.completions.create(
    {model: req.model, prompt: req.score, max_tokens: 0, temperature: 0, logprobs: 1, echo: true});
out.echo = r.choices.map((c) => ({index: c.index, text: c.text, logprobs: c.logprobs}));

r = await client.completions.create(
    {model: req.model, prompt: [req.prompt, req.prompt], max_tokens: 5, n: 3, temperature: 1, seed: 7});
out.n = r.choices.map((c) => ({index: c.index, text: c.text}));

// Penalties and a logit bias, as client libraries send them; three requests at once (batched
// together by the server): one plain, one penalized, one penalized and streamed.
const penalties = {presence_penalty: 0.8, frequency_penalty: 1.5, logit_bias: req.logit_bias};
const [plain, penalized, streamed] = await Promise.all([
  client.completions.create({...greedy, prompt: req.prompt, max_tokens: 12}),
  client.completions.create({...greedy, prompt: req.prompt, max_tokens: 12, ...penalties}),
  (async () => {
    let t = "";
    for await (const c of await client.completions.create(
        {...greedy, prompt: req.prompt, max_tokens: 12, ...penalties, stream: true})) {
      if (c.choices.length) t += c.choices[0].text;
    }
    return t;
  })(),
]);
out.penalties = {plain: plain.choices[0].text, penalized: penalized.choices[0].text, streamed};
r = await client.chat.completions.create({...greedy, messages: req.messages, ...penalties});
out.chat_penalized = r.choices[0].message.content;

out.errors = [];
for (const call of [
  () => client.completions.create({...greedy, prompt: req.prompt, logprobs: 50}),
  () => client.chat.completions.create({...greedy, messages: [{role: "robot", content: "hi"}]}),
  () => client.completions.create({...greedy, model: "gpt-4", prompt: "x"}),
]) {
  try {
    await call();
    out.errors.push(null);
  } catch (e) {
    out.errors.push({status: e.status, param: e.param ?? null, message: e.message});
  }
}
console.log(JSON.stringify(out));
