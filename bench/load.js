// Load client for tunnelgw's benchmarks: Node `ws` with bufferutil (C
// masking), or plain TCP for the direct baseline.  Prints one JSON line.
//
//   node load.js --mode throughput --url ws://127.0.0.1:P/raw --conns 8 --seconds 5 [--size 65536] [--window 8]
//   node load.js --mode throughput --tcp 127.0.0.1:P ...
//   node load.js --mode rtt --url ... | --tcp ... [--size 32] [--seconds 5]
//   node load.js --mode handshakes --url ... [--conns 4] [--seconds 5] [--authorization VALUE]
//   node load.js --mode idle --url ... --conns 10000   (holds them until stdin closes)
//   node load.js --mode rfb --url ... | --tcp ... [--seconds 5]   (an RFB client: handshake,
//       then framebuffer bytes counted, a FramebufferUpdateRequest sent per MiB received)
//
// wss:// URLs, and --tls 1 with --tcp, speak TLS (the certificate is not
// checked: the bench's own); handshakes over TLS with --resume 1 resume
// the previous TLS session (an abbreviated handshake) instead of a full one.
"use strict";

const net = require("net");
const tls = require("tls");
const WebSocket = require("ws");

function parseArgs() {
  const args = { mode: "throughput", conns: 1, seconds: 5, size: 65536, window: 8, protocol: "binary", warmup: 1 };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    const value = argv[i + 1];
    args[key] = /^\d+(\.\d+)?$/.test(value) ? Number(value) : value;
  }
  return args;
}

const args = parseArgs();
const protocols = args.protocol === "none" ? [] : [args.protocol];

// One connection: a uniform interface over WebSocket and TCP.
function open(onData) {
  return new Promise((resolve, reject) => {
    if (args.tcp) {
      const [host, port] = args.tcp.split(":");
      const sock = args.tls
        ? tls.connect({ host, port: Number(port), rejectUnauthorized: false })
        : net.connect({ host, port: Number(port) });
      sock.setNoDelay(true);
      sock.on(args.tls ? "secureConnect" : "connect", () =>
        resolve({ send: (b) => sock.write(b), close: () => sock.destroy(), raw: sock })
      );
      sock.on("data", (d) => onData(d.length, d));
      sock.on("error", reject);
    } else {
      const ws = new WebSocket(args.url, protocols, {
        perMessageDeflate: false,
        handshakeTimeout: 10000,
        rejectUnauthorized: false,
      });
      ws.binaryType = "nodebuffer";
      ws.on("open", () => resolve({ send: (b) => ws.send(b, { binary: true }), close: () => ws.terminate(), raw: ws }));
      ws.on("message", (d) => onData(d.length, d));
      ws.on("error", reject);
      ws.on("unexpected-response", (req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    }
  });
}

function done(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(0);
}

async function throughput() {
  const payload = Buffer.alloc(args.size, 7);
  let counting = false;
  let bytes = 0;
  const conns = [];
  for (let i = 0; i < args.conns; i++) {
    let received = 0;
    let sent = 0;
    const state = {};
    const c = await open((n) => {
      received += n;
      if (counting) bytes += n;
      // keep `window` messages in flight: send one more per message echoed
      while (sent - received < args.window * args.size) {
        state.c.send(payload);
        sent += args.size;
      }
    });
    state.c = c;
    conns.push(c);
    for (let k = 0; k < args.window; k++) {
      c.send(payload);
      sent += args.size;
    }
  }
  await new Promise((r) => setTimeout(r, args.warmup * 1000));
  counting = true;
  const start = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, args.seconds * 1000));
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  counting = false;
  conns.forEach((c) => c.close());
  done({
    mode: "throughput",
    conns: args.conns,
    size: args.size,
    bytes,
    seconds: elapsed,
    mib_per_s: bytes / elapsed / 1048576,
    msgs_per_s: bytes / args.size / elapsed,
  });
}

async function rtt() {
  const payload = Buffer.alloc(args.size, 7);
  let pending = 0;
  let resolveOne = null;
  const c = await open((n) => {
    pending -= n;
    if (pending <= 0 && resolveOne) {
      const r = resolveOne;
      resolveOne = null;
      r();
    }
  });
  const once = () =>
    new Promise((r) => {
      resolveOne = r;
      pending += args.size;
      c.send(payload);
    });
  const warmEnd = Date.now() + args.warmup * 1000;
  while (Date.now() < warmEnd) await once();
  const samples = [];
  const end = Date.now() + args.seconds * 1000;
  const start = process.hrtime.bigint();
  while (Date.now() < end) {
    const t0 = process.hrtime.bigint();
    await once();
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  c.close();
  samples.sort((a, b) => a - b);
  const pct = (p) => samples[Math.min(samples.length - 1, Math.floor((p / 100) * samples.length))];
  done({ mode: "rtt", size: args.size, count: samples.length, p50_us: pct(50), p99_us: pct(99), msgs_per_s: samples.length / elapsed });
}

// One opening and closing handshake, on a bare socket: the upgrade request
// (a fresh random key), the 101 checked as a browser checks it (status,
// Upgrade, Connection, Sec-WebSocket-Accept, the subprotocol offered), a
// masked close frame with 1000, the server's close frame (1000), then the
// server's FIN.  Node ws does the same through node:http, and at that
// cost it, not the gateway, limited the handshake rate.
const crypto = require("crypto");
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

let lastSession = null; // the previous TLS session, for --resume
// one TLS context for every connection, as a browser keeps one: without
// it Node builds an OpenSSL context per connection, and that, not the
// gateway, limited the rate of TLS handshakes
let secureContext = null;

function handshakeOnce(url) {
  return new Promise((resolve, reject) => {
    const nonce = crypto.randomBytes(20);
    const key = nonce.subarray(0, 16).toString("base64");
    const accept = crypto.createHash("sha1").update(key + GUID).digest("base64");
    const mask = nonce.subarray(16, 20);
    const close = Buffer.from([0x88, 0x82, mask[0], mask[1], mask[2], mask[3], 0x03 ^ mask[0], 0xe8 ^ mask[1]]);
    const offered =
      (protocols.length ? `Sec-WebSocket-Protocol: ${protocols.join(", ")}\r\n` : "") +
      (args.authorization ? `Authorization: ${args.authorization}\r\n` : "");
    const secure = url.protocol === "wss:";
    const sock = secure
      ? tls.connect({
          host: url.hostname,
          port: Number(url.port),
          rejectUnauthorized: false,
          secureContext: (secureContext = secureContext || tls.createSecureContext({})),
          session: args.resume ? lastSession || undefined : undefined,
        })
      : net.connect({ host: url.hostname, port: Number(url.port) });
    let reused = false; // read at the handshake: the socket forgets it once destroyed
    if (secure && args.resume) sock.on("session", (session) => (lastSession = session));
    sock.setNoDelay(true);
    let head = null; // the response head, once whole
    let buffered = Buffer.alloc(0);
    let closed = false; // the server's close frame arrived
    const fail = (why) => {
      clearTimeout(timer);
      sock.destroy();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail("timeout"), 10000);
    sock.on(secure ? "secureConnect" : "connect", () => {
      reused = secure && sock.isSessionReused();
      sock.write(
        `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${offered}\r\n`
      );
    });
    sock.on("data", (d) => {
      buffered = buffered.length ? Buffer.concat([buffered, d]) : d;
      if (head === null) {
        const end = buffered.indexOf("\r\n\r\n");
        if (end < 0) return;
        head = buffered.subarray(0, end).toString("latin1").split("\r\n");
        buffered = buffered.subarray(end + 4);
        const headers = {};
        for (const line of head.slice(1)) {
          const colon = line.indexOf(":");
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        const chosen = headers["sec-websocket-protocol"];
        if (!/^HTTP\/1\.1 101 /.test(head[0])) return fail(head[0]);
        if ((headers.upgrade || "").toLowerCase() !== "websocket") return fail("no Upgrade");
        if (!/(^|,)\s*upgrade\s*(,|$)/i.test(headers.connection || "")) return fail("no Connection");
        if (headers["sec-websocket-accept"] !== accept) return fail("bad Sec-WebSocket-Accept");
        if (protocols.length ? !protocols.includes(chosen) : chosen !== undefined) return fail("bad subprotocol");
        sock.write(close);
      }
      if (!closed && buffered.length >= 2) {
        const length = buffered[1] & 0x7f;
        if (buffered[0] !== 0x88 || buffered[1] & 0x80 || length > 125) return fail("not a close frame");
        if (buffered.length < 2 + length) return;
        if (length < 2 || buffered.readUInt16BE(2) !== 1000) return fail("close code not 1000");
        closed = true;
      }
    });
    sock.on("end", () => {
      clearTimeout(timer);
      sock.destroy();
      if (closed) resolve(reused);
      else reject(new Error("FIN before the close frame"));
    });
    sock.on("error", (e) => fail(String(e)));
  });
}

async function handshakes() {
  const url = new URL(args.url);
  let count = 0;
  let resumed = 0;
  let failures = 0;
  let firstError = null;
  const end = Date.now() + args.seconds * 1000;
  const start = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  const latencies = [];
  async function worker() {
    while (Date.now() < end) {
      const began = process.hrtime.bigint();
      try {
        if (await handshakeOnce(url)) resumed++;
        latencies.push(Number(process.hrtime.bigint() - began) / 1e6);
        count++;
      } catch (e) {
        failures++;
        firstError = firstError || String(e);
      }
    }
  }
  await Promise.all(Array.from({ length: args.conns }, worker));
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpuStart);
  latencies.sort((a, b) => a - b);
  const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))] : null);
  done({
    mode: "handshakes",
    concurrency: args.conns,
    p50_ms: pct(50),
    p99_ms: pct(99),
    count,
    resumed,
    failures,
    first_error: firstError,
    seconds: elapsed,
    per_s: count / elapsed,
    client_cpu_us_per_handshake: (cpu.user + cpu.system) / Math.max(1, count),
  });
}

async function idle() {
  const payload = Buffer.from("ping");
  let held = 0;
  let failures = 0;
  const conns = [];
  let next = 0;
  async function worker() {
    while (next < args.conns) {
      next++;
      try {
        let gotEcho;
        const echoed = new Promise((r) => (gotEcho = r));
        const c = await open(() => gotEcho());
        c.send(payload);
        await Promise.race([echoed, new Promise((_, rej) => setTimeout(() => rej(new Error("no echo")), 10000))]);
        c.raw.on("close", () => held--);
        conns.push(c);
        held++;
      } catch (e) {
        failures++;
      }
    }
  }
  const start = Date.now();
  await Promise.all(Array.from({ length: 100 }, worker));
  process.stdout.write(JSON.stringify({ mode: "idle", held, failures, seconds: (Date.now() - start) / 1000 }) + "\n");
  // hold until the orchestrator closes our stdin, then report who is still up
  process.stdin.resume();
  process.stdin.on("end", () => {
    const still = held;
    conns.forEach((c) => c.close());
    done({ mode: "idle-end", still_held: still });
  });
}

async function rfb() {
  // the handshake as noVNC does it (3.8, security None, shared), then the stream
  const steps = [
    [12, () => Buffer.from("RFB 003.008\n")],
    [2, () => Buffer.from([1])],
    [4, () => Buffer.from([1])],
    [24, null], // ServerInit; its name follows
  ];
  const request = Buffer.from([3, 1, 0, 0, 0, 0, 4, 0, 3, 0]);
  let buffered = Buffer.alloc(0);
  let streaming = false;
  let counting = false;
  let bytes = 0;
  let sinceRequest = 0;
  let ready;
  const handshaken = new Promise((r) => (ready = r));
  let c = null;
  const early = []; // data that came with the upgrade, before open() resolved
  const handle = (n, d) => {
    if (streaming) {
      if (counting) bytes += n;
      sinceRequest += n;
      if (sinceRequest >= 1048576) {
        sinceRequest = 0;
        c.send(request);
      }
      return;
    }
    buffered = Buffer.concat([buffered, d]);
    while (steps.length && buffered.length >= steps[0][0]) {
      const [need, reply] = steps.shift();
      if (reply === null) {
        const nameLength = buffered.readUInt32BE(20);
        buffered = buffered.subarray(need + nameLength);
        streaming = true;
        c.send(request);
        ready();
        return;
      }
      buffered = buffered.subarray(need);
      c.send(reply());
    }
  };
  c = await open((n, d) => (c ? handle(n, d) : early.push([n, d])));
  early.forEach(([n, d]) => handle(n, d));
  await handshaken;
  await new Promise((r) => setTimeout(r, args.warmup * 1000));
  counting = true;
  const start = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, args.seconds * 1000));
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  counting = false;
  c.close();
  done({ mode: "rfb", bytes, seconds: elapsed, mib_per_s: bytes / elapsed / 1048576 });
}

({ throughput, rtt, handshakes, idle, rfb })[args.mode]().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e) }) + "\n");
  process.exit(1);
});
