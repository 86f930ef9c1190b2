// Opens many WebSockets (the ws library) and reports when each closes.
// Usage: node many_tunnels.mjs '<json>' with url, count, protocol, headers,
// concurrency (opening at once), timeoutMs.  Prints a JSON line
// {"event": "ready", "open": N} once every connection is open (or one
// failed: "error"), then, once all have closed or the time is up,
// {"event": "closed", "closes": [[code, epochMs], ...]}.
import WebSocket from "ws";

const cfg = JSON.parse(process.argv[2]);
const sockets = [];
const closes = [];
let opened = 0;

function openOne() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(cfg.url, cfg.protocol, { headers: cfg.headers, perMessageDeflate: false });
    ws.on("open", () => { opened += 1; resolve(ws); });
    ws.on("error", reject);
    ws.on("close", (code) => {
      closes.push([code, Date.now()]);
      if (closes.length === cfg.count) finish();
    });
    sockets.push(ws);
  });
}

function finish() {
  console.log(JSON.stringify({ event: "closed", closes }));
  process.exit(0);
}

try {
  for (let i = 0; i < cfg.count; i += cfg.concurrency) {
    const batch = [];
    for (let j = i; j < Math.min(cfg.count, i + cfg.concurrency); j += 1) batch.push(openOne());
    await Promise.all(batch);
  }
  console.log(JSON.stringify({ event: "ready", open: opened }));
} catch (err) {
  console.log(JSON.stringify({ event: "error", error: String(err), open: opened }));
  process.exit(1);
}
setTimeout(finish, cfg.timeoutMs ?? 30000);
