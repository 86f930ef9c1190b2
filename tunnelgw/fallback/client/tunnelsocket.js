// TunnelSocket: the WebSocket API, over a WebSocket when the network lets
// one through and over tunnelgw's HTTP fallback when it does not (a proxy
// that drops Upgrade, buffers responses or refuses CONNECT).  No
// dependencies.  Served by the gateway at /tunnelgw/tunnelsocket.js;
// the npm package "tunnelsocket" is this file.
//
//   const socket = new TunnelSocket("wss://gw.example/stomp", ["v12.stomp"]);
//   socket.binaryType = "arraybuffer";
//   socket.onmessage = (event) => ...;
//
// Options (a third argument): connectTimeout (ms a WebSocket has to open
// before the fallback is tried; default 5000), fallback ("auto", "never",
// "only"), streamProbe (ms a stream has to show its first bytes before
// the session polls instead; default 4000), lagLimit (ms a stream may
// lag behind what the gateway says it sent before the session polls;
// default 2000), headers (extra headers of
// the fallback's requests, for clients that may set them).
(function (root) {
  "use strict";

  const CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;
  const PAD = 0, TEXT = 1, BINARY = 2, CLOSE = 8, HEARTBEAT = 9;
  const HEADER = 13;
  const TYPE = "application/x-tunnelgw-fallback";
  const ACK_EVERY = 16 * 1024; // bytes received unacknowledged before an ack goes up on its own
  // the browser's own, taken now: a page may put TunnelSocket in its place
  // (window.WebSocket = TunnelSocket) for a library that takes no factory
  const NativeWebSocket = root.WebSocket;
  const encoder = new TextEncoder();
  const decoder = new TextDecoder("utf-8", { fatal: true });

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

  function closePayload(code, reason) {
    const text = encoder.encode(reason || "").slice(0, 123);
    const out = new Uint8Array(2 + text.length);
    new DataView(out.buffer).setUint16(0, code);
    out.set(text, 2);
    return out;
  }

  // frames from a byte stream cut anywhere
  class Parser {
    constructor() { this.buffer = new Uint8Array(0); }
    feed(chunk) {
      const joined = new Uint8Array(this.buffer.length + chunk.length);
      joined.set(this.buffer, 0);
      joined.set(chunk, this.buffer.length);
      const frames = [];
      let at = 0;
      while (joined.length - at >= HEADER) {
        const view = new DataView(joined.buffer, joined.byteOffset + at);
        const length = view.getUint32(9);
        if (joined.length - at < HEADER + length) break;
        frames.push({
          kind: view.getUint8(0),
          seq: view.getUint32(1) * 0x100000000 + view.getUint32(5),
          payload: joined.slice(at + HEADER, at + HEADER + length),
        });
        at += HEADER + length;
      }
      this.buffer = joined.slice(at);
      return frames;
    }
  }

  function event(type, fields) {
    const e = new Event(type);
    for (const key of Object.keys(fields || {})) {
      Object.defineProperty(e, key, { value: fields[key], enumerable: true });
    }
    return e;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  class TunnelSocket extends EventTarget {
    constructor(url, protocols, options) {
      super();
      this.url = String(url);
      this._protocols = protocols === undefined ? [] : [].concat(protocols);
      this._options = Object.assign(
        { connectTimeout: 5000, fallback: "auto", streamProbe: 4000, lagLimit: 2000, headers: {} }, options || {});
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      this.extensions = "";
      this.transport = null; // "websocket" or "fallback", once open
      this._binaryType = "blob";
      this._state = CONNECTING;
      this._protocol = "";
      this._ws = null;
      if (this._options.fallback === "only") {
        this._fallback();
      } else {
        this._tryWebSocket();
      }
    }

    get readyState() { return this._ws ? this._ws.readyState : this._state; }
    get protocol() { return this._ws ? this._ws.protocol : this._protocol; }
    get bufferedAmount() { return this._ws ? this._ws.bufferedAmount : (this._up ? this._up.buffered : 0); }
    get binaryType() { return this._binaryType; }
    set binaryType(value) {
      this._binaryType = value;
      if (this._ws) this._ws.binaryType = value;
    }

    send(data) {
      if (this._ws) return this._ws.send(data);
      if (this._state === CONNECTING) throw new DOMException("still connecting", "InvalidStateError");
      if (this._state !== OPEN) return;
      if (typeof data === "string") {
        this._up.push(TEXT, encoder.encode(data));
      } else if (data instanceof ArrayBuffer) {
        this._up.push(BINARY, new Uint8Array(data.slice(0)));
      } else if (ArrayBuffer.isView(data)) {
        this._up.push(BINARY, new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)));
      } else if (typeof Blob !== "undefined" && data instanceof Blob) {
        const place = this._up.reserve(data.size);
        data.arrayBuffer().then((buffer) => this._up.fill(place, new Uint8Array(buffer)));
      } else {
        this._up.push(TEXT, encoder.encode(String(data)));
      }
    }

    close(code, reason) {
      if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
        throw new DOMException("invalid close code", "InvalidAccessError");
      }
      if (this._ws) return this._ws.close(code, reason);
      if (this._state === CLOSING || this._state === CLOSED) return;
      if (this._state === CONNECTING) {
        this._abandoned = true;
        this._finish(false, 1006, "");
        return;
      }
      this._state = CLOSING;
      this._closeSent = { code: code === undefined ? 1005 : code, reason: reason || "" };
      this._up.push(CLOSE, code === undefined ? new Uint8Array(0) : closePayload(code, reason));
    }

    _emit(type, fields) {
      const e = event(type, fields);
      const handler = this["on" + type];
      if (typeof handler === "function") handler.call(this, e);
      this.dispatchEvent(e);
    }

    // -- WebSocket first ---------------------------------------------------

    _tryWebSocket() {
      let ws;
      try {
        ws = new NativeWebSocket(this.url, this._protocols);
      } catch (err) {
        this._fallback();
        return;
      }
      ws.binaryType = this._binaryType;
      let opened = false;
      const timer = setTimeout(() => {
        if (!opened) { ws.onclose = ws.onerror = null; ws.close(); this._fallback(); }
      }, this._options.connectTimeout);
      ws.onopen = () => {
        opened = true;
        clearTimeout(timer);
        if (this._abandoned) { ws.close(); return; }
        this._ws = ws;
        this.transport = "websocket";
        ws.onmessage = (e) => this._emit("message", { data: e.data });
        ws.onerror = () => this._emit("error");
        ws.onclose = (e) => this._emit("close", { code: e.code, reason: e.reason, wasClean: e.wasClean });
        this._emit("open");
      };
      ws.onerror = () => {};
      ws.onclose = () => {
        if (opened) return;
        clearTimeout(timer);
        if (this._options.fallback === "never" || this._abandoned) {
          this._state = CLOSED;
          this._emit("error");
          this._emit("close", { code: 1006, reason: "", wasClean: false });
        } else {
          this._fallback();
        }
      };
    }

    // -- the fallback ------------------------------------------------------

    _endpoint() {
      return this.url.replace(/^ws(s?):/i, "http$1:");
    }

    async _request(kind, body, extra, signal) {
      const headers = Object.assign({ "Content-Type": TYPE, "X-Tunnel-Fallback": kind }, this._options.headers, extra);
      if (this._session) {
        headers["X-Tunnel-Session"] = this._session;
        headers["X-Tunnel-Ack"] = String(this._received);
        this._receivedBytes = 0; // what is received from now on is acknowledged by a later request
      }
      return fetch(this._endpoint(), {
        method: "POST", headers, body: body || new Uint8Array(0), credentials: "include",
        cache: "no-store", mode: "cors", redirect: "error", signal,
      });
    }

    async _fallback() {
      if (this._abandoned) return;
      let response;
      try {
        response = await this._request("open", null, { "X-Tunnel-Protocol": this._protocols.join(", ") });
      } catch (err) {
        response = null;
      }
      if (!response || response.status !== 200) {
        this._finish(false, 1006, "");
        return;
      }
      const opened = await response.json();
      if (this._abandoned) return;
      this._session = opened.session;
      this._protocol = opened.protocol || "";
      this._maxBody = opened.max_body;
      this._heartbeat = opened.heartbeat;
      this._expected = []; // [message number the gateway said it sent, by when it should be here]
      this._received = 0; // the last message down taken
      this._acked = 0; // the last one acknowledged to the gateway
      this._receivedBytes = 0;
      this._up = new Outgoing(this);
      this._polling = false;
      this._state = OPEN;
      this.transport = "fallback";
      this._emit("open");
      this._downLoop();
    }

    async _downLoop() {
      let failures = 0;
      while (this._state !== CLOSED) {
        try {
          const status = this._polling ? await this._poll() : await this._stream();
          if (status === 404 || status === 403 || status === 401) {
            this._finish(false, 1006, "");
            return;
          }
          failures = status === 200 ? 0 : failures + 1;
        } catch (err) {
          failures += 1;
        }
        if (failures) await sleep(Math.min(2000, 100 * 2 ** failures));
        if (failures > 8) { this._finish(false, 1006, ""); return; }
      }
    }

    async _stream() {
      // a stream whose first bytes (its padding) do not come in time is
      // held by a proxy: the session polls from then on
      const abort = new AbortController();
      let reader = null;
      const poll = () => {
        this._polling = true;
        abort.abort();
        if (reader) reader.cancel().catch(() => {});
      };
      let seen = false;
      const probe = setTimeout(() => { if (!seen) poll(); }, this._options.streamProbe);
      // and one that shows nothing, not even its heartbeats, for longer than
      // they come is held as well
      let last = Date.now();
      const silence = this._heartbeat * 1000 + this._options.lagLimit;
      const watchdog = setInterval(() => {
        if (Date.now() - last > silence || this._lagging()) poll();
      }, 250);
      try {
        const response = await this._request("stream", null, {}, abort.signal);
        if (response.status !== 200) return response.status;
        reader = response.body.getReader();
        // each response is frames from its start: what a cut one left half done is sent again
        const parser = new Parser();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          seen = true;
          last = Date.now();
          this._take(parser.feed(value));
          if (this._state === CLOSED) { abort.abort(); break; }
        }
      } finally {
        clearTimeout(probe);
        clearInterval(watchdog);
      }
      return 200;
    }

    async _poll() {
      const response = await this._request("poll");
      if (response.status !== 200) return response.status;
      this._take(new Parser().feed(new Uint8Array(await response.arrayBuffer())));
      return 200;
    }

    // The gateway says (in its answers to POSTs) how far it has sent down:
    // a stream that lags behind that for lagLimit ms is being held by a
    // proxy that passes it on in blocks, and the session polls instead.
    _expect(sent) {
      const expected = this._expected;
      if (this._polling || !(sent > this._received)) return;
      if (expected.length && expected[expected.length - 1][0] >= sent) return;
      expected.push([sent, Date.now() + this._options.lagLimit]);
    }

    _lagging() {
      const expected = this._expected;
      while (expected.length && expected[0][0] <= this._received) expected.shift();
      return expected.length > 0 && expected[0][1] < Date.now();
    }

    _take(frames) {
      for (const f of frames) {
        if (f.kind === PAD || f.kind === HEARTBEAT || f.seq <= this._received) continue;
        if (f.seq !== this._received + 1) break; // resent from the gap on the next request
        this._received = f.seq;
        this._receivedBytes += f.payload.length + HEADER;
        if (f.kind === CLOSE) {
          this._closed(f.payload);
          return;
        }
        if (this._state !== OPEN) continue; // closing: what comes before the answer is dropped
        let data;
        if (f.kind === TEXT) {
          data = decoder.decode(f.payload);
        } else {
          data = this._binaryType === "arraybuffer" ? f.payload.buffer : new Blob([f.payload]);
        }
        this._emit("message", { data });
      }
      if (this._receivedBytes >= ACK_EVERY) this._up.kick(true);
    }

    _closed(payload) {
      const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
      const code = payload.length >= 2 ? view.getUint16(0) : 1005;
      const reason = payload.length > 2 ? decoder.decode(payload.slice(2)) : "";
      if (this._state === OPEN) {
        // the gateway closes: answer with its code, as a WebSocket does
        // (the answer's POST acknowledges the close too)
        this._state = CLOSING;
        this._up.push(CLOSE, payload.length >= 2 ? closePayload(code, "") : new Uint8Array(0));
      } else {
        // the gateway's answer to ours: acknowledged, it ends the session
        this._up.kick(true);
      }
      this._finish(true, code, reason);
    }

    _finish(clean, code, reason) {
      if (this._state === CLOSED) return;
      this._state = CLOSED;
      if (!clean) this._emit("error");
      this._emit("close", { code, reason, wasClean: clean });
    }
  }

  // the messages up: numbered, sent in POSTs of at most max_body bytes,
  // one at a time, kept until the gateway says it has them
  class Outgoing {
    constructor(socket) {
      this.socket = socket;
      this.seq = 0;
      this.queue = []; // {seq, bytes} in order; bytes null while a Blob is read
      this.buffered = 0;
      this.sending = false;
      this.acking = false;
    }
    push(kind, payload) {
      this.seq += 1;
      this.queue.push({ seq: this.seq, bytes: frame(kind, this.seq, payload), size: payload.length });
      this.buffered += payload.length;
      this.kick(false);
    }
    reserve(size) {
      this.seq += 1;
      const place = { seq: this.seq, bytes: null, size };
      this.queue.push(place);
      this.buffered += size;
      return place;
    }
    fill(place, payload) {
      place.bytes = frame(BINARY, place.seq, payload);
      this.kick(false);
    }
    async kick(ackOnly) {
      const socket = this.socket;
      if (this.sending) {
        if (ackOnly && !this.acking) this._ack();
        return;
      }
      const batch = [];
      let size = 0;
      for (const item of this.queue) {
        if (item.bytes === null) break;
        if (batch.length && size + item.bytes.length > socket._maxBody) break;
        batch.push(item);
        size += item.bytes.length;
      }
      if (!batch.length) {
        if (ackOnly && !this.acking) this._ack();
        return;
      }
      this.sending = true;
      // a POST the gateway holds (it waits for acknowledgements, or the
      // backend is slow): an acknowledgement goes up meanwhile, and its
      // answer says how far down the gateway has sent
      const watch = setTimeout(() => { if (!this.acking) this._ack(); }, socket._options.lagLimit);
      const body = new Uint8Array(size);
      let at = 0;
      for (const item of batch) { body.set(item.bytes, at); at += item.bytes.length; }
      let failures = 0;
      while (socket._session) {
        try {
          const response = await socket._request("send", body);
          if (response.status !== 200) { socket._finish(false, 1006, ""); break; }
          this._taken(response);
          break;
        } catch (err) {
          failures += 1;
          if (failures > 8) { socket._finish(false, 1006, ""); break; }
          await sleep(Math.min(2000, 100 * 2 ** failures));
        }
      }
      clearTimeout(watch);
      this.sending = false;
      if (this.queue.length && socket._state !== CLOSED) this.kick(false);
    }
    _taken(response) {
      const ack = Number(response.headers.get("X-Tunnel-Ack"));
      this.socket._expect(Number(response.headers.get("X-Tunnel-Sent")));
      while (this.queue.length && this.queue[0].seq <= ack) {
        this.buffered -= this.queue.shift().size;
      }
    }
    // acknowledge what was received, again as long as more came meanwhile:
    // the gateway stops sending (and answering) once too much is unacknowledged
    async _ack() {
      const socket = this.socket;
      this.acking = true;
      do {
        try {
          const response = await socket._request("send", null);
          if (response.status !== 200) break;
          this._taken(response);
        } catch (err) {
          await sleep(100);
        }
      } while (socket._receivedBytes > 0 && socket._session && socket._state !== CLOSED);
      this.acking = false;
    }
  }

  TunnelSocket.CONNECTING = CONNECTING;
  TunnelSocket.OPEN = OPEN;
  TunnelSocket.CLOSING = CLOSING;
  TunnelSocket.CLOSED = CLOSED;
  Object.assign(TunnelSocket.prototype, { CONNECTING, OPEN, CLOSING, CLOSED });

  root.TunnelSocket = TunnelSocket;
  if (typeof module === "object" && module.exports) module.exports = TunnelSocket;
})(typeof globalThis !== "undefined" ? globalThis : this);
