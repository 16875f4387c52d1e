"use strict";
// The user story of tests/test_socketio.py with the official npm socket.io-client, as an app
// written against the spec would use it. It prints what it saw as one JSON line; the test
// asserts on it. Argument: a JSON object (urls, tokens, the session's id).
const { io } = require("socket.io-client");

const cfg = JSON.parse(process.argv[2]);
const TIMEOUT = 10000;

// Every event a socket receives, in order; `next` skips to the first that matches.
class Inbox {
  constructor(socket) {
    this.items = [];
    this.waiters = [];
    socket.onAny((event, data) => {
      this.items.push([event, data]);
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  async next(event, match = {}, timeout = TIMEOUT) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const i = this.items.findIndex(
        ([name, data]) =>
          name === event && Object.entries(match).every(([k, v]) => data && data[k] === v),
      );
      if (i >= 0) return this.items.splice(0, i + 1).pop()[1];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${event} within ${timeout} ms`);
      await new Promise((wake) => {
        this.waiters.push(wake);
        setTimeout(wake, left);
      });
    }
  }

  async count(event, ms) {
    await new Promise((done) => setTimeout(done, ms));
    return this.items.filter(([name]) => name === event).length;
  }
}

function connect(url, token) {
  const socket = io(url, {
    transports: ["websocket"],
    auth: { token },
    reconnection: false,
    forceNew: true,
    timeout: TIMEOUT,
  });
  const inbox = new Inbox(socket);
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve({ socket, inbox }));
    socket.once("connect_error", (err) => {
      socket.close();
      reject(err);
    });
  });
}

const ask = (socket, event, data) => socket.timeout(TIMEOUT).emitWithAck(event, data);
const pick = (data, keys) => Object.fromEntries(keys.map((k) => [k, data[k]]));

async function main() {
  const seen = {};
  const { session } = cfg;

  try {
    await connect(cfg.ann.url, "nonsense");
    seen.badToken = "connected";
  } catch (err) {
    seen.badToken = { message: err.message, code: err.data && err.data.code };
  }
  const stranger = await connect(cfg.ann.url, cfg.stranger.token);
  seen.forbidden = pick(await ask(stranger.socket, "session:join", cfg.secretSession), [
    "ok",
    "code",
  ]);
  stranger.socket.close();

  const ann = await connect(cfg.ann.url, cfg.ann.token);
  seen.annJoined = pick(await ask(ann.socket, "session:join", session), [
    "ok",
    "sessionId",
    "lastSeq",
  ]);
  let bob = await connect(cfg.bob.url, cfg.bob.token);
  await ask(bob.socket, "session:join", { sessionId: session });
  seen.userJoined = pick(await ann.inbox.next("session:user_joined", { userId: cfg.bob.id }), [
    "sessionId",
    "userId",
  ]);

  const sent = await ask(ann.socket, "session:message", {
    sessionId: session,
    message: "Problem 3?",
    type: "text",
  });
  seen.sent = pick(sent, ["ok", "seq", "duplicate"]);
  seen.bobGot = pick(await bob.inbox.next("session:message"), [
    "sessionId",
    "seq",
    "message",
    "type",
    "userId",
  ]);

  bob.socket.emit("typing:start", { sessionId: session, userId: cfg.bob.id });
  seen.typing = pick(await ann.inbox.next("typing:start"), ["sessionId", "userId"]);

  // Bob goes away; Ann writes on; Bob comes back (through the other node) with his last seq.
  bob.socket.disconnect();
  for (const message of ["you missed this", "and this"]) {
    await ask(ann.socket, "session:message", { sessionId: session, message });
  }
  bob = await connect(cfg.bobAgainUrl, cfg.bob.token);
  seen.resumed = pick(
    await ask(bob.socket, "session:join", { sessionId: session, since: seen.bobGot.seq }),
    ["ok", "lastSeq"],
  );
  seen.caughtUp = [];
  for (let i = 0; i < 2; i++) {
    const m = await bob.inbox.next("session:message");
    seen.caughtUp.push([m.seq, m.message]);
  }
  seen.extra = await bob.inbox.count("session:message", 500);

  ann.socket.close();
  bob.socket.close();
  process.stdout.write(JSON.stringify(seen) + "\n");
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exit(1);
  },
);
