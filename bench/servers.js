// Reference servers for the benchmarks; prints "ready" once listening.
//   node servers.js tcp-echo PORT   a TCP echo (the backend of every tunnel)
//   node servers.js ws-echo PORT    a WebSocket echo in Node ws (the load client's ceiling)
//   node servers.js rfb-stream PORT an RFB 3.8 server (security None) that, after
//                                   ServerInit, streams framebuffer bytes as fast as
//                                   the client takes them (the rfb benchmark's backend)
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
} else if (kind === "rfb-stream") {
  const chunk = Buffer.alloc(65536, 0x55);
  const serverInit = Buffer.concat([
    Buffer.from([4, 0, 3, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, 0, 0, 0, 5]),
    Buffer.from("bench"),
  ]);
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    s.on("error", () => {});
    let stage = 0;
    let pending = Buffer.alloc(0);
    const stream = () => {
      while (s.write(chunk)) {}
    };
    s.on("drain", () => stage === 4 && stream());
    s.on("data", (d) => {
      pending = Buffer.concat([pending, d]);
      const need = [12, 1, 1][stage];
      if (stage < 3 && pending.length >= need) {
        pending = pending.subarray(need);
        stage += 1;
        if (stage === 1) s.write(Buffer.from([1, 1])); // security types: None
        if (stage === 2) s.write(Buffer.from([0, 0, 0, 0])); // SecurityResult OK
        if (stage === 3) {
          s.write(serverInit);
          stage = 4;
          stream();
        }
      }
      if (stage === 4) pending = Buffer.alloc(0); // client messages: taken, ignored
    });
    s.write("RFB 003.008\n");
  });
  server.listen(Number(port), "127.0.0.1", 4096, () => console.log("ready"));
} else {
  console.error("usage: servers.js tcp-echo|ws-echo|rfb-stream PORT");
  process.exit(2);
}
