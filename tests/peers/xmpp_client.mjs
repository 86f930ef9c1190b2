// Real XMPP-over-WebSocket clients for tunnelgw's integration tests:
// xmpp.js (@xmpp/client) or StanzaJS (stanza), with the `ws` package and
// the HTTP headers of the upgrade (Authorization, Origin) given here.
// Usage: node xmpp_client.mjs '<json>' with
//   lib ("xmppjs" | "stanza"), url, domain, username, password, resource,
//   headers, peer (a JID to message), body, expectReply (wait for a
//   message from peer before leaving), timeoutMs.
// Prints one JSON line: {"event": "result", ...}.  Exits 0 unless it timed
// out or crashed.
import WebSocket from "ws";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const cfg = JSON.parse(process.argv[2]);
const result = {
  event: "result",
  lib: cfg.lib,
  protocol: null,
  online: false,
  jid: null,
  messages: [],
  errors: [],
  wsClose: null,
  httpStatus: null,
};

class GatewaySocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, { headers: cfg.headers ?? {} });
    this.on("open", () => {
      result.protocol = this.protocol;
    });
    this.on("close", (code) => {
      result.wsClose = code;
    });
    this.on("error", (err) => {
      result.errors.push(`websocket: ${err.message}`);
    });
    this.on("unexpected-response", (req, res) => {
      result.httpStatus = res.statusCode;
      finish();
    });
  }
}

const timer = setTimeout(() => {
  process.stdout.write(JSON.stringify({ ...result, event: "timeout" }) + "\n");
  process.exit(1);
}, cfg.timeoutMs ?? 20000);

let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  // let the close handshake's last events arrive
  setTimeout(() => {
    clearTimeout(timer);
    process.stdout.write(JSON.stringify(result) + "\n");
    process.exit(0);
  }, 300);
}

const bare = (jid) => String(jid).split("/")[0];

async function runXmppJs() {
  globalThis.WebSocket = GatewaySocket;
  const { client, xml } = await import("@xmpp/client");
  const xmpp = client({
    service: cfg.url,
    domain: cfg.domain,
    username: cfg.username,
    password: cfg.password,
    resource: cfg.resource ?? "xmppjs",
  });
  xmpp.reconnect.stop();
  xmpp.on("error", (err) => {
    result.errors.push(err.condition ?? err.message);
  });
  xmpp.on("offline", finish);
  xmpp.on("stanza", async (stanza) => {
    if (stanza.is("message") && stanza.getChildText("body")) {
      result.messages.push({ from: bare(stanza.attrs.from), body: stanza.getChildText("body") });
      if (cfg.expectReply && bare(stanza.attrs.from) === cfg.peer) await xmpp.stop();
    }
  });
  xmpp.on("online", async (address) => {
    result.online = true;
    result.jid = address.toString();
    await xmpp.send(xml("presence"));
    if (cfg.peer) {
      await xmpp.send(xml("message", { to: cfg.peer, type: "chat" }, xml("body", {}, cfg.body)));
    }
    if (!cfg.expectReply) await xmpp.stop();
  });
  try {
    await xmpp.start();
  } catch (err) {
    result.errors.push(err.condition ?? err.message);
    finish();
  }
}

async function runStanza() {
  const platform = require("stanza/platform/node/index.js");
  platform.WebSocket = GatewaySocket;
  const XMPP = require("stanza");
  const client = XMPP.createClient({
    jid: `${cfg.username}@${cfg.domain}`,
    password: cfg.password,
    resource: cfg.resource ?? "stanza",
    transports: { websocket: cfg.url, bosh: false },
  });
  client.on("stream:error", (err) => result.errors.push(err.condition));
  // StanzaJS queues a server's stream error behind the disconnect and may
  // never emit it: read the condition from the raw message instead
  client.on("raw", (direction, data) => {
    const match = direction === "incoming" && /<stream:error[^]*?<([a-z-]+) xmlns=.urn:ietf:params:xml:ns:xmpp-streams/.exec(data);
    if (match) result.errors.push(match[1]);
  });
  client.on("auth:failed", () => result.errors.push("auth-failed"));
  client.on("disconnected", finish);
  client.on("message", (msg) => {
    if (!msg.body) return;
    result.messages.push({ from: bare(msg.from), body: msg.body });
    if (cfg.expectReply && bare(msg.from) === cfg.peer) client.disconnect();
  });
  client.on("session:started", () => {
    result.online = true;
    result.jid = client.jid;
    client.sendPresence();
    if (cfg.peer) client.sendMessage({ to: cfg.peer, type: "chat", body: cfg.body });
    if (!cfg.expectReply) client.disconnect();
  });
  client.connect();
}

if (cfg.lib === "stanza") await runStanza();
else await runXmppJs();
