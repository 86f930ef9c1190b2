// Load for the fallback benchmark (bench/fallback.py): the same echo
// exchanges over a WebSocket (ws) and over the HTTP fallback (the
// gateway's own TunnelSocket, fallback only), from Node.
// Usage: node fallback_load.mjs '<json>' with url, transport ("websocket"
// or "fallback"), bytes (echoed in messages of chunk bytes, at most
// window bytes in flight), pings (32-byte round trips, one at a time).
// Prints one JSON line: seconds for the bytes, MB/s each way, the round
// trips' median and p99 in ms.
import { createRequire } from "node:module";
import WebSocket from "ws";

const require = createRequire(import.meta.url);
const TunnelSocket = require(process.env.TUNNELSOCKET);
const cfg = JSON.parse(process.argv[2]);
const socket =
  cfg.transport === "fallback"
    ? new TunnelSocket(cfg.url, ["binary"], { fallback: "only" })
    : new WebSocket(cfg.url, ["binary"]);
socket.binaryType = "arraybuffer";
const fail = (why) => { process.stdout.write(JSON.stringify({ error: why }) + "\n"); process.exit(1); };
setTimeout(() => fail("timeout"), cfg.timeoutMs ?? 120000);
socket.onerror = () => fail("error");

let onMessage = null;
socket.onmessage = (e) => onMessage(e.data);
const wait = () => new Promise((resolve) => { onMessage = resolve; });

socket.onopen = async () => {
  // throughput: bytes echoed, a window of them in flight
  const chunk = new Uint8Array(cfg.chunk ?? 65536).fill(7);
  const window = cfg.window ?? 1 << 20;
  let sent = 0, received = 0;
  const started = performance.now();
  await new Promise((resolve) => {
    const pump = () => {
      while (sent < cfg.bytes && sent - received < window) { socket.send(chunk); sent += chunk.length; }
    };
    onMessage = (data) => { received += data.byteLength; if (received >= cfg.bytes) resolve(); else pump(); };
    pump();
  });
  const seconds = (performance.now() - started) / 1000;
  // round trips, one at a time
  const ping = new Uint8Array(32).fill(1);
  const times = [];
  for (let i = 0; i < (cfg.pings ?? 200); i++) {
    const t = performance.now();
    const back = wait();
    socket.send(ping);
    await back;
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
  process.stdout.write(JSON.stringify({ seconds, mb_per_s: cfg.bytes / seconds / 1e6, rtt_ms_p50: at(0.5), rtt_ms_p99: at(0.99) }) + "\n");
  socket.onclose = () => process.exit(0);
  socket.close(1000, "done");
};
