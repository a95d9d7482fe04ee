// Malformed and oversized requests, each on its own connection to 127.0.0.1:PORT
// (bench/serve_hostile.sh): the time to the answer's first byte and to the connection's close, the
// status and the message. Prints one JSON object per case, one per line.
//   node bench/framing.mjs PORT
import net from 'node:net';

const port = Number(process.argv[2]);
const body = JSON.stringify({ prompt: 'the', max_tokens: 2 });
const cases = {
  'Content-Length: -5': 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n',
  'Content-Length: 10^12, Connection: close':
    'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\nConnection: close\r\n\r\n',
  'Content-Length: ten': 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n',
  'header without colon (Host x)': 'GET /health HTTP/1.1\r\nHost x\r\n\r\n',
  'request line without version': 'GET /health\r\n\r\n',
  'lines ending in LF': 'GET /health HTTP/1.1\nHost: x\n\n',
  '2 MB body sent (limit 1 MiB)':
    'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n' + 'x'.repeat(2000000),
  'good request (for scale)':
    `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
};

function one(name, text) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let first = null;
    let data = '';
    const s = net.connect(port, '127.0.0.1', () => s.write(text));
    s.setTimeout(30000, () => s.destroy());
    s.on('data', (d) => {
      if (first === null) first = performance.now() - t0;
      data += d.toString('latin1');
    });
    s.on('error', () => {});
    s.on('close', () => {
      const status = Number((data.match(/^HTTP\/1\.[01] (\d+)/) || [])[1] || 0);
      const m = data.match(/"message":"((?:[^"\\]|\\.)*)"/);
      resolve({
        case: name, status,
        first_byte_ms: first === null ? null : +first.toFixed(1),
        closed_ms: +(performance.now() - t0).toFixed(1),
        message: m ? m[1] : '',
      });
    });
  });
}

for (const [name, text] of Object.entries(cases)) console.log(JSON.stringify(await one(name, text)));
