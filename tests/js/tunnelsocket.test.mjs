// TunnelSocket's fallback (tunnelgw/fallback/client/tunnelsocket.js) in
// memory, against a fake gateway answering its fetch() calls: frames down
// cut anywhere, resent or out of order; messages up numbered and kept until
// acknowledged; the closing handshakes; the refusals that end a session.
// Run by tests/unit/test_tunnelsocket_js.py:  node --test tests/js/
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const TunnelSocket = require("../../tunnelgw/fallback/client/tunnelsocket.js");

const PAD = 0, TEXT = 1, BINARY = 2, CLOSE = 8, HEARTBEAT = 9;
const HEADER = 13;
const encoder = new TextEncoder();

function frame(kind, seq, payload) {
  const out = new Uint8Array(HEADER + payload.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, kind);
  view.setUint32(1, Math.floor(seq / 0x100000000));
  view.setUint32(5, seq >>> 0);
  view.setUint32(9, payload.length);
  out.set(payload, HEADER);
  return out;
}

function frames(bytes) {
  const out = [];
  for (let at = 0; at < bytes.length;) {
    const view = new DataView(bytes.buffer, bytes.byteOffset + at);
    const length = view.getUint32(9);
    out.push({ kind: view.getUint8(0), seq: view.getUint32(5), payload: bytes.slice(at + HEADER, at + HEADER + length) });
    at += HEADER + length;
  }
  return out;
}

function closing(code, reason) {
  const text = encoder.encode(reason);
  const out = new Uint8Array(2 + text.length);
  new DataView(out.buffer).setUint16(0, code);
  out.set(text, 2);
  return out;
}

function joined(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

// The gateway's side of one session: what fetch() is answered with.
class FakeGateway {
  constructor({ open = 200, stream = [] } = {}) {
    this.openStatus = open;
    this.streamStatus = stream; // statuses of the next stream requests (then 200)
    this.down = null; // the current stream's controller
    this.streams = []; // the X-Tunnel-Ack of each stream request
    this.up = []; // every frame the client sent, in order of arrival
    this.taken = 0; // the last message up taken
    this.posts = []; // each send's body size and frame count
    globalThis.fetch = (url, init) => this.fetch(url, init);
  }

  async fetch(url, init) {
    await new Promise((resolve) => setImmediate(resolve)); // an answer comes on a later turn, as off a network
    const headers = init.headers;
    const kind = headers["X-Tunnel-Fallback"];
    if (kind === "open") {
      if (this.openStatus !== 200) return new Response(null, { status: this.openStatus });
      const body = { session: "s1", protocol: "p1", max_body: 1024, heartbeat: 1e6 };
      return new Response(JSON.stringify(body), { status: 200 });
    }
    assert.equal(headers["X-Tunnel-Session"], "s1");
    if (kind === "stream") {
      this.streams.push(Number(headers["X-Tunnel-Ack"]));
      const status = this.streamStatus.shift() ?? 200;
      if (status !== 200) return new Response(null, { status });
      const stream = new ReadableStream({ start: (controller) => { this.down = controller; } });
      init.signal?.addEventListener("abort", () => {
        try { this.down.error(new DOMException("aborted", "AbortError")); } catch { /* closed already */ }
      });
      return new Response(stream, { status: 200 });
    }
    assert.equal(kind, "send");
    const sent = frames(new Uint8Array(init.body));
    this.posts.push({ size: init.body.length, frames: sent.length });
    for (const f of sent) {
      if (f.seq === this.taken + 1) { this.up.push(f); this.taken = f.seq; }
    }
    return new Response(null, { status: 200, headers: { "X-Tunnel-Ack": String(this.taken), "X-Tunnel-Sent": "0" } });
  }

  // frames down, on the current stream, in chunks of `cut` bytes
  send(bytes, cut = bytes.length) {
    for (let at = 0; at < bytes.length; at += cut) this.down.enqueue(bytes.slice(at, at + cut));
  }

  endStream() { this.down.close(); }

  // resolves once `ready()` holds, checked at each turn of the event loop
  // (the test's timeout bounds the wait)
  until(ready) {
    return new Promise((resolve) => {
      const check = () => (ready() ? resolve() : setImmediate(check));
      check();
    });
  }
}

function open(gateway) {
  const socket = new TunnelSocket("ws://gw.test/svc", ["p1"], { fallback: "only", streamProbe: 60000, lagLimit: 60000 });
  socket.binaryType = "arraybuffer";
  const seen = { messages: [], errors: 0, close: null };
  socket.onmessage = (e) => seen.messages.push(typeof e.data === "string" ? e.data : [...new Uint8Array(e.data)]);
  socket.onerror = () => { seen.errors += 1; };
  const closed = new Promise((resolve) => { socket.onclose = (e) => { seen.close = { code: e.code, reason: e.reason, wasClean: e.wasClean }; resolve(); }; });
  const opened = new Promise((resolve) => { socket.onopen = resolve; });
  const streaming = () => opened.then(() => gateway.until(() => gateway.down !== null));
  return { socket, seen, closed, opened, streaming };
}

test("messages down arrive whole and in order, however the stream is cut", { timeout: 5000 }, async () => {
  const gateway = new FakeGateway();
  const { socket, seen, closed, streaming } = open(gateway);
  await streaming();
  assert.equal(socket.protocol, "p1");
  assert.equal(socket.transport, "fallback");
  const bytes = joined(
    frame(PAD, 0, new Uint8Array(32)),
    frame(TEXT, 1, encoder.encode("héllo")),
    frame(HEARTBEAT, 0, new Uint8Array(0)),
    frame(BINARY, 2, Uint8Array.from([0, 1, 2, 255])),
    frame(CLOSE, 3, closing(1000, "bye")),
  );
  gateway.send(bytes, 1);
  await closed;
  assert.deepEqual(seen.messages, ["héllo", [0, 1, 2, 255]]);
  assert.deepEqual(seen.close, { code: 1000, reason: "bye", wasClean: true });
  assert.equal(seen.errors, 0);
  // the client answers the gateway's close with its code
  await gateway.until(() => gateway.up.length === 1);
  assert.equal(gateway.up[0].kind, CLOSE);
  assert.deepEqual([...gateway.up[0].payload], [0x03, 0xe8]);
});

test("a frame sent again is taken once; after a gap, the next stream resumes there", { timeout: 5000 }, async () => {
  const gateway = new FakeGateway();
  const { seen, closed, streaming } = open(gateway);
  await streaming();
  const text = (seq, data) => frame(TEXT, seq, encoder.encode(data));
  gateway.send(joined(text(1, "a"), text(1, "a"), text(2, "b"), text(4, "d")));
  await gateway.until(() => seen.messages.length === 2);
  const first = gateway.down;
  gateway.endStream();
  await gateway.until(() => gateway.down !== first);
  assert.deepEqual(gateway.streams, [0, 2]); // the new stream says what the client has
  gateway.send(joined(text(3, "c"), text(4, "d"), frame(CLOSE, 5, closing(1001, "going"))));
  await closed;
  assert.deepEqual(seen.messages, ["a", "b", "c", "d"]);
  assert.deepEqual(seen.close, { code: 1001, reason: "going", wasClean: true });
});

test("messages up are numbered, kept until acknowledged, and a close answered", { timeout: 5000 }, async () => {
  const gateway = new FakeGateway();
  const { socket, seen, closed, opened, streaming } = open(gateway);
  await opened;
  assert.throws(() => socket.close(1001), { name: "InvalidAccessError" }); // as a WebSocket's close()
  socket.send("x");
  socket.send(Uint8Array.from([1, 2, 3]));
  socket.send(new Uint8Array(2000)); // over max_body with the others: a POST of its own
  await gateway.until(() => gateway.up.length === 3);
  assert.deepEqual(gateway.up.map((f) => [f.kind, f.seq]), [[TEXT, 1], [BINARY, 2], [BINARY, 3]]);
  assert.deepEqual([...gateway.up[1].payload], [1, 2, 3]);
  // a POST holds at most max_body bytes, unless it is one message
  assert.ok(gateway.posts.every((post) => post.size <= 1024 || post.frames === 1), JSON.stringify(gateway.posts));
  await gateway.until(() => socket.bufferedAmount === 0);
  await streaming();
  socket.close(4000, "done");
  assert.equal(socket.readyState, TunnelSocket.CLOSING);
  await gateway.until(() => gateway.up.length === 4);
  assert.deepEqual([gateway.up[3].kind, gateway.up[3].seq], [CLOSE, 4]);
  assert.deepEqual([...gateway.up[3].payload], [...closing(4000, "done")]);
  // what comes down before the gateway's answer is dropped, as a WebSocket drops it
  gateway.send(joined(frame(TEXT, 1, encoder.encode("late")), frame(CLOSE, 2, closing(4000, ""))));
  await closed;
  assert.deepEqual(seen.messages, []);
  assert.deepEqual(seen.close, { code: 4000, reason: "", wasClean: true });
  assert.equal(socket.readyState, TunnelSocket.CLOSED);
});

test("a session the gateway no longer knows ends 1006", { timeout: 5000 }, async () => {
  const gateway = new FakeGateway({ stream: [404] });
  const { seen, closed } = open(gateway);
  await closed;
  assert.deepEqual(seen.close, { code: 1006, reason: "", wasClean: false });
  assert.equal(seen.errors, 1);
});

test("an open refused ends 1006 before any open event", { timeout: 5000 }, async () => {
  const gateway = new FakeGateway({ open: 403 });
  const { socket, seen, closed } = open(gateway);
  let opened = false;
  socket.addEventListener("open", () => { opened = true; });
  await closed;
  assert.equal(opened, false);
  assert.deepEqual(seen.close, { code: 1006, reason: "", wasClean: false });
});
