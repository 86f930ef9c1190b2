// The fallback's own client (tunnelgw/fallback/client) driven from Node
// for tunnelgw's integration tests.  Usage: node tunnelsocket_client.mjs '<json>'
// with url, protocols, headers (of the fallback's requests: Origin,
// Authorization), fallback ("only" by default: Node 20 has no WebSocket),
// text (messages to send and expect back), progressAt (print a progress
// line once that many bytes are back), holdMs (stay open that long
// once done), bytes and chunk (that many
// random bytes in binary messages of that size, to an echo), closeCode,
// timeoutMs.  Prints one JSON line: open, protocol, the texts back, the
// sha256 of the bytes sent and received, the close code, reason and
// wasClean, any error.
import { createHash, randomFillSync } from "node:crypto";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const TunnelSocket = require(process.env.TUNNELSOCKET);
const cfg = JSON.parse(process.argv[2]);
const result = { event: "result", open: false, protocol: null, transport: null, texts: [], sent: null, received: null, close: null };
const done = () => { process.stdout.write(JSON.stringify(result) + "\n"); process.exit(0); };
setTimeout(() => { result.error = "timeout"; done(); }, cfg.timeoutMs ?? 60000);

const socket = new TunnelSocket(cfg.url, cfg.protocols ?? [], { fallback: cfg.fallback ?? "only", headers: cfg.headers ?? {} });
socket.binaryType = "arraybuffer";
const sentHash = createHash("sha256"), receivedHash = createHash("sha256");
let receivedBytes = 0;
const total = cfg.bytes ?? 0;
const texts = cfg.text ?? [];

function finishIfDone() {
  if (result.texts.length === texts.length && receivedBytes >= total) {
    if (result.received !== null) return;
    result.received = receivedHash.digest("hex");
    // holdMs: stay open that long first (for the gateway to close)
    setTimeout(() => socket.close(cfg.closeCode ?? 1000, "done"), cfg.holdMs ?? 0);
  }
}

socket.onopen = async () => {
  result.open = true;
  result.protocol = socket.protocol;
  result.transport = socket.transport;
  for (const text of texts) socket.send(text);
  const chunk = cfg.chunk ?? 65536;
  for (let sent = 0; sent < total; sent += chunk) {
    const piece = new Uint8Array(Math.min(chunk, total - sent));
    randomFillSync(piece);
    sentHash.update(piece);
    socket.send(piece);
    while (socket.bufferedAmount > 4 * chunk) await new Promise((r) => setTimeout(r, 5));
  }
  result.sent = total ? sentHash.digest("hex") : null;
  finishIfDone();
};
socket.onmessage = (e) => {
  if (typeof e.data === "string") result.texts.push(e.data);
  else {
    receivedHash.update(new Uint8Array(e.data));
    const before = receivedBytes;
    receivedBytes += e.data.byteLength;
    // progressAt: say so once that many bytes are back (a test acts mid-transfer)
    if (cfg.progressAt && before < cfg.progressAt && receivedBytes >= cfg.progressAt) {
      process.stdout.write(JSON.stringify({ event: "progress", received: receivedBytes }) + "\n");
    }
  }
  if (result.sent !== null || !total) finishIfDone();
};
socket.onerror = () => { result.error = result.error ?? "error"; };
socket.onclose = (e) => { result.polling = socket._polling ?? null; result.close = { code: e.code, reason: e.reason, wasClean: e.wasClean }; done(); };
