// STOMP load for bench/adapters.py: publish/subscribe through a STOMP over
// WebSocket endpoint (tunnelgw's stomp adapter, or RabbitMQ's Web-STOMP),
// Node ws, frames written by hand (no library in the measured path).
//
//   node stomp_load.js --url ws://127.0.0.1:P/stomp --conns 4 --size 1024 --window 64 --seconds 5
//
// Each connection: CONNECT (guest), SUBSCRIBE to its own topic, then SENDs
// of `size`-byte bodies to it, `window` not yet received at any time.
// Prints one JSON line: messages received per second, all connections.
"use strict";

const WebSocket = require("ws");

const args = { conns: 4, size: 1024, window: 64, seconds: 5, warmup: 1 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const value = argv[i + 1];
  args[argv[i].replace(/^--/, "")] = /^\d+(\.\d+)?$/.test(value) ? Number(value) : value;
}
const fail = (why) => {
  process.stdout.write(JSON.stringify({ error: String(why) }) + "\n");
  process.exit(1);
};

let counting = false;
let received = 0;

function connection(index) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(args.url, ["v12.stomp"], { perMessageDeflate: false });
    const topic = `/topic/bench.${process.pid}.${index}`;
    const body = "x".repeat(args.size);
    const send = `SEND\ndestination:${topic}\ncontent-length:${args.size}\n\n${body}\0`;
    let outstanding = 0;
    let pending = ""; // a frame not yet whole
    const pump = () => {
      while (outstanding < args.window) {
        ws.send(send);
        outstanding++;
      }
    };
    ws.on("open", () => ws.send("CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0"));
    ws.on("message", (data) => {
      const frames = (pending + data.toString()).split("\0");
      pending = frames.pop();
      for (const frame of frames) {
        const command = frame.replace(/^\n+/, "").split("\n", 1)[0];
        if (command === "CONNECTED") {
          ws.send(`SUBSCRIBE\nid:0\ndestination:${topic}\nack:auto\n\n\0`);
          // the subscription is in place before the first SEND is routed: a receipt would tell; a
          // short pause does it without one
          setTimeout(() => { pump(); resolve(ws); }, 200);
        } else if (command === "MESSAGE") {
          outstanding--;
          if (counting) received++;
          pump();
        } else if (command === "ERROR") {
          reject(new Error(frame));
        }
      }
    });
    ws.on("error", reject);
    ws.on("unexpected-response", (req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

(async () => {
  const sockets = await Promise.all(Array.from({ length: args.conns }, (_, i) => connection(i)));
  await new Promise((r) => setTimeout(r, args.warmup * 1000));
  counting = true;
  const start = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, args.seconds * 1000));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  counting = false;
  sockets.forEach((ws) => ws.terminate());
  process.stdout.write(JSON.stringify({ received, seconds, msgs_per_s: received / seconds }) + "\n");
  process.exit(0);
})().catch(fail);
