// What bench/stomp_load.js and bench/xmpp_load.js share: their arguments,
// and the run (every connection set up, a warm-up second, then the
// messages received in `seconds` counted, one JSON line printed).
"use strict";

function parse(defaults) {
  const args = { conns: 4, size: 1024, window: 64, seconds: 5, warmup: 1, ...defaults };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1];
    args[argv[i].replace(/^--/, "")] = /^\d+(\.\d+)?$/.test(value) ? Number(value) : value;
  }
  return args;
}

function fail(why) {
  process.stdout.write(JSON.stringify({ error: String(why) }) + "\n");
  process.exit(1);
}

// connection(index, received) resolves with an open ws once it is sending;
// it calls received() for each message back
function run(args, connection) {
  let counting = false;
  let received = 0;
  const count = () => {
    if (counting) received++;
  };
  (async () => {
    const sockets = await Promise.all(Array.from({ length: args.conns }, (_, i) => connection(i, count)));
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
}

module.exports = { parse, fail, run };
