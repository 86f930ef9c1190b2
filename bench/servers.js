// Reference servers for the benchmarks; prints "ready" once listening.
//   node servers.js tcp-echo PORT   a TCP echo (the backend of every tunnel)
//   node servers.js ws-echo PORT    a WebSocket echo in Node ws (the load client's ceiling)
"use strict";
const net = require("net");
const [kind, port] = process.argv.slice(2);
if (kind === "tcp-echo") {
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    s.on("error", () => {});
    s.pipe(s); // pipe() applies backpressure both ways
  });
  server.maxConnections = 100000;
  server.listen(Number(port), "127.0.0.1", 4096, () => console.log("ready"));
} else if (kind === "ws-echo") {
  const WebSocket = require("ws");
  const wss = new WebSocket.Server({ host: "127.0.0.1", port: Number(port), perMessageDeflate: false, handleProtocols: (p) => [...p][0] || false });
  wss.on("connection", (ws) => ws.on("message", (d, isBinary) => ws.send(d, { binary: isBinary })));
  wss.on("listening", () => console.log("ready"));
} else {
  console.error("usage: servers.js tcp-echo|ws-echo PORT");
  process.exit(2);
}
