// The page's live socket (PROTOCOL.md). One websocket, opened with a short-lived token from
// POST /api/web/token (the page holds no long-lived token). It reconnects by itself, rejoins
// its rooms with the last sequence it saw (so nothing is missed and nothing repeats), and
// resends messages the server has not acknowledged with their client id (stored once).

import { post } from "./api.js";

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];
// Errors after which resending the same message cannot help.
const FINAL_SEND_ERRORS = new Set([
  "validation_error", "held_for_review", "rate_limited", "session_closed", "not_joined",
  "forbidden", "not_found", "feature_disabled",
]);

export function newCid() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class LiveSocket {
  constructor() {
    this.ws = null;
    this.rooms = new Map(); // room -> {lastSeq, enrol}
    this.unacked = new Map(); // cid -> send frame, in the order sent
    this.listeners = new Set();
    this.state = "connecting";
    this.attempt = 0;
    this.stopped = false;
    this.timer = null;
    // A browser that lost its network may keep a dead socket open for minutes: drop it at
    // once, and come back (and catch up) as soon as the network does.
    addEventListener("offline", () => this.drop("offline"));
    addEventListener("online", () => this.reconnectNow());
  }

  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(frame) {
    for (const listener of [...this.listeners]) listener(frame);
  }

  setState(state) {
    this.state = state;
    this.emit({ t: "_state", state });
  }

  start() {
    this.connect();
  }

  async connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped || this.ws || this.opening) return;
    if (!navigator.onLine) return this.setState("offline");
    this.setState("connecting");
    this.opening = true;
    let token;
    try {
      token = (await post("/api/web/token")).accessToken;
    } catch (err) {
      this.opening = false;
      if (err.status === 401) return this.signedOut();
      return this.retry();
    }
    this.opening = false;
    if (this.stopped || this.ws) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.setState("online");
      for (const [room, info] of this.rooms) this.sendJoin(room, info);
      for (const frame of this.unacked.values()) this.write(frame);
    };
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (event.code === 4003) return this.signedOut(); // the login session ended
      this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    if (!navigator.onLine) return this.setState("offline"); // 'online' brings it back
    this.setState("connecting");
    const base = BACKOFF_MS[Math.min(this.attempt++, BACKOFF_MS.length - 1)];
    this.timer = setTimeout(() => this.connect(), base * (0.75 + Math.random() / 2));
  }

  reconnectNow() {
    this.attempt = 0;
    this.connect();
  }

  drop(state) {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.close();
    }
    this.setState(state);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.drop("stopped");
  }

  signedOut() {
    this.stop();
    this.emit({ t: "_signed_out" });
  }

  write(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  sendJoin(room, info) {
    this.write({ t: "join", room, since: info.lastSeq ?? undefined, enrol: info.enrol || undefined });
  }

  receive(frame) {
    const info = frame.room ? this.rooms.get(frame.room) : undefined;
    switch (frame.t) {
      case "joined":
        if (info) {
          info.enrol = false;
          if (info.lastSeq === null && frame.room.startsWith("session:")) info.lastSeq = frame.lastSeq;
        }
        break;
      case "message":
        if (info && info.lastSeq !== null) {
          if (frame.seq <= info.lastSeq) return; // seen already
          if (frame.seq > info.lastSeq + 1) {
            // never expected (the server sends every room in order): ask for the gap again
            this.write({ t: "resume", room: frame.room, since: info.lastSeq });
            return;
          }
          info.lastSeq = frame.seq;
        }
        break;
      case "ack":
        this.unacked.delete(frame.cid);
        break;
      case "resync":
        if (info && info.lastSeq !== null) {
          this.write({ t: "resume", room: frame.room, since: info.lastSeq });
        }
        break;
      case "error":
        if (frame.ref && FINAL_SEND_ERRORS.has(frame.code)) this.unacked.delete(frame.ref);
        break;
      default:
        break;
    }
    this.emit(frame);
  }

  join(room, { enrol = false } = {}) {
    const info = { lastSeq: null, enrol };
    this.rooms.set(room, info);
    this.sendJoin(room, info);
  }

  leave(room) {
    if (this.rooms.delete(room)) this.write({ t: "leave", room });
  }

  send(room, body) {
    const cid = newCid();
    const frame = { t: "send", room, cid, body };
    this.unacked.set(cid, frame);
    this.write(frame); // otherwise sent on the next connect
    return cid;
  }

  typing(room, state) {
    this.write({ t: "typing", room, state });
  }
}
