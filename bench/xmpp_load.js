// XMPP load for bench/adapters.py: message stanzas through an XMPP over
// WebSocket endpoint (RFC 7395: tunnelgw's xmpp adapter, or prosody's
// mod_websocket), Node ws, stanzas written by hand.
//
//   node xmpp_load.js --url ws://127.0.0.1:P/xmpp --domain localhost --user alice --password PW
//        [--conns 4] [--size 1024] [--window 64] [--seconds 5]
//
// Each connection logs in (SASL PLAIN), binds a resource, then sends
// message stanzas with `size`-byte bodies to its own full JID, `window`
// not yet received at any time.  Prints one JSON line: stanzas received
// per second, all connections.
"use strict";

const WebSocket = require("ws");

const { parse, run } = require("./paced");

const args = parse({});
const open = `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="${args.domain}" version="1.0"/>`;

function connection(index, received) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(args.url, ["xmpp"], { perMessageDeflate: false });
    let step = "features";
    let jid = null;
    let stanza = null;
    let outstanding = 0;
    const pump = () => {
      while (outstanding < args.window) {
        ws.send(stanza);
        outstanding++;
      }
    };
    ws.on("open", () => ws.send(open));
    ws.on("message", (data) => {
      const text = data.toString();
      if (step === "running") {
        if (text.startsWith("<message")) {
          outstanding--;
          received();
          pump();
        }
        return;
      }
      if (step === "features" && text.includes("<mechanisms")) {
        const plain = Buffer.from(`\0${args.user}\0${args.password}`).toString("base64");
        ws.send(`<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">${plain}</auth>`);
        step = "auth";
      } else if (step === "auth" && text.includes("<success")) {
        ws.send(open);
        step = "bound-features";
      } else if (step === "bound-features" && text.includes("<bind")) {
        ws.send(`<iq xmlns="jabber:client" type="set" id="b${index}"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><resource>load${index}</resource></bind></iq>`);
        step = "bind";
      } else if (step === "bind" && text.includes("<jid>")) {
        jid = text.split("<jid>")[1].split("</jid>")[0];
        stanza = `<message xmlns="jabber:client" to="${jid}" type="chat"><body>${"x".repeat(args.size)}</body></message>`;
        step = "running";
        pump();
        resolve(ws);
      } else if (text.includes("<failure") || text.includes("<stream:error") || text.includes('type="error"')) {
        reject(new Error(text));
      }
    });
    ws.on("error", reject);
    ws.on("unexpected-response", (req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

run(args, connection);
