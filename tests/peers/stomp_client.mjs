// A real stomp.js client (@stomp/stompjs + ws) for tunnelgw's integration
// tests.  Usage: node stomp_client.mjs '<json>' with
//   url, protocols (default: stompjs's own), headers (HTTP headers of the
//   upgrade: Origin, Authorization), connectHeaders, heartbeat (ms, both ways),
//   subscribe (destinations), send ({destination, body, receipt}),
//   holdMs (stay connected that long after the exchange, for heart-beats),
//   waitStdin (after the exchange, wait for a line on stdin before leaving),
//   timeoutMs.
// Prints one JSON object per line: {"event": ...}; the last is "result"
// with everything observed.  Exits 0 unless it timed out or crashed.
import { Client, Versions } from "@stomp/stompjs";
import WebSocket from "ws";
import readline from "node:readline";

const cfg = JSON.parse(process.argv[2]);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const result = {
  event: "result",
  protocol: null,
  connected: null,
  messages: [],
  receipts: [],
  errors: [],
  close: null,
  heartbeatsIn: 0,
};

const timer = setTimeout(() => {
  out({ ...result, event: "timeout" });
  process.exit(1);
}, cfg.timeoutMs ?? 20000);

let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  out(result);
  process.exit(0);
}

const protocols = cfg.protocols ?? Versions.default.protocolVersions();
const client = new Client({
  webSocketFactory: () => {
    const ws = new WebSocket(cfg.url, protocols, { headers: cfg.headers ?? {} });
    ws.on("open", () => {
      result.protocol = ws.protocol;
    });
    ws.on("message", (data) => {
      const text = data.toString();
      if (text === "\n" || text === "\r\n") result.heartbeatsIn += 1;
    });
    ws.on("unexpected-response", (req, res) => {
      result.close = { httpStatus: res.statusCode };
      finish();
    });
    return ws;
  },
  connectHeaders: cfg.connectHeaders ?? {},
  heartbeatIncoming: cfg.heartbeat ?? 0,
  heartbeatOutgoing: cfg.heartbeat ?? 0,
  reconnectDelay: 0,
  debug: () => {},
});

const expected = cfg.send ? 1 : 0;

function maybeDone() {
  if (result.messages.length < expected) return;
  if (cfg.send?.receipt && !result.receipts.includes(cfg.send.receipt)) return;
  out({ event: "exchanged" });
  const leave = () => client.deactivate();
  if (cfg.waitStdin) {
    readline.createInterface({ input: process.stdin }).once("line", leave);
  } else {
    setTimeout(leave, cfg.holdMs ?? 0);
  }
}

client.onConnect = (frame) => {
  result.connected = { version: frame.headers.version, heartBeat: frame.headers["heart-beat"] };
  out({ event: "connected" });
  for (const destination of cfg.subscribe ?? []) {
    client.subscribe(destination, (message) => {
      result.messages.push({ destination: message.headers.destination, body: message.body });
      maybeDone();
    });
  }
  if (cfg.send) {
    if (cfg.send.receipt) {
      client.watchForReceipt(cfg.send.receipt, () => {
        result.receipts.push(cfg.send.receipt);
        maybeDone();
      });
    }
    const headers = cfg.send.receipt ? { receipt: cfg.send.receipt } : {};
    client.publish({ destination: cfg.send.destination, body: cfg.send.body, headers });
  } else {
    maybeDone();
  }
};
client.onStompError = (frame) => {
  result.errors.push({ message: frame.headers.message, receiptId: frame.headers["receipt-id"] ?? null });
};
client.onWebSocketClose = (evt) => {
  if (!result.close) result.close = { code: evt.code, reason: evt.reason };
  finish();
};
client.activate();
