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

const { parse, run } = require("./paced");

const args = parse({});

function connection(index, received) {
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
          received();
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

run(args, connection);
