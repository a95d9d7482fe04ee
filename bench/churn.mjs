// Clients that leave mid-stream beside one that stays (bench/serve_hostile.sh): REQUESTS streaming
// completions from CLIENTS parallel clients, each request closed by its client right after the
// status line (a chat UI's "stop"; MODE leave, the default), or read to its end (MODE stay: a
// flood of live requests), ROUNDS times (default 1) 0.2 s apart, while one live client sends whole
// completions back to back. Prints one JSON line: the churning requests' statuses (all rounds),
// and the live client's statuses and latencies (p50, p99 in ms).
//   node bench/churn.mjs PORT REQUESTS CLIENTS [leave|stay] [ROUNDS]
import http from 'node:http';

const [port, requests, clients] = process.argv.slice(2, 5).map(Number);
const stay = process.argv[5] === 'stay';
const rounds = Number(process.argv[6] || 1);
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

function post(body, onResponse) {
  return new Promise((resolve) => {
    const data = JSON.stringify(body);
    const req = http.request(
      { host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', agent,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } },
      (res) => onResponse(req, res, resolve));
    req.on('error', () => resolve(0));
    req.end(data);
  });
}

const churn = { 200: 0, 503: 0, other: 0 };
let next = 0;
async function churner() {
  while (next < requests) {
    next++;
    // Status line seen: the client leaves at once (a 503's body is not read either).
    const status = await post({ prompt: 'def f(x):', max_tokens: 128, stream: true },
                              (req, res, resolve) => {
                                if (!stay) {
                                  resolve(res.statusCode);
                                  req.destroy();
                                  return;
                                }
                                res.resume();
                                res.on('end', () => resolve(res.statusCode));
                              });
    if (status === 200 || status === 503) churn[status]++;
    else churn.other++;
  }
}

const live = { statuses: {}, ms: [] };
let churning = true;
async function liveClient() {
  while (churning) {
    const t0 = performance.now();
    const status = await post({ prompt: 'the', max_tokens: 8, temperature: 0 },
                              (req, res, resolve) => {
                                res.resume();
                                res.on('end', () => resolve(res.statusCode));
                              });
    live.ms.push(performance.now() - t0);
    live.statuses[status] = (live.statuses[status] || 0) + 1;
  }
}

const t0 = performance.now();
const liveDone = liveClient();
for (let r = 0; r < rounds; r++) {
  if (r > 0) await new Promise((resolve) => setTimeout(resolve, 200));
  next = 0;
  await Promise.all(Array.from({ length: clients }, churner));
}
const seconds = (performance.now() - t0) / 1000;
churning = false;
await liveDone;
const sorted = live.ms.slice().sort((a, b) => a - b);
const pct = (p) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN;
console.log(JSON.stringify({
  churn, seconds: +seconds.toFixed(2), live: live.statuses,
  live_p50_ms: +pct(0.5).toFixed(1), live_p99_ms: +pct(0.99).toFixed(1),
}));
