// N TCP connections to 127.0.0.1:PORT that send a request line and then one header line every
// 200 ms for SECONDS, never ending their headers (bench/serve_hostile.sh).
//   node bench/trickle.mjs PORT N SECONDS
import net from 'node:net';

const [port, n, seconds] = process.argv.slice(2).map(Number);
const socks = [];
for (let i = 0; i < n; i++) {
  const s = net.connect(port, '127.0.0.1', () => s.write('GET /health HTTP/1.1\r\nHost: x\r\n'));
  s.on('error', () => {});
  socks.push(s);
}
const timer = setInterval(() => {
  for (const s of socks) if (!s.destroyed && s.writable) s.write('X-A: b\r\n');
}, 200);
setTimeout(() => {
  clearInterval(timer);
  for (const s of socks) s.destroy();
}, seconds * 1000);
