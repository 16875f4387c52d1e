// A study session's live room: chat with history on scroll-back, presence and typing.

import { ApiError, get, post } from "./api.js";
import { h, time } from "./dom.js";

const PAGE = 30; // messages per history page
const TYPING_REPEAT_MS = 3000; // a 'start' is repeated while typing (the server ends it after 6 s)
const TYPING_IDLE_MS = 4000;

export class RoomView {
  constructor(ctx, sessionId) {
    this.ctx = ctx;
    this.sessionId = sessionId;
    this.room = `session:${sessionId}`;
    this.bySeq = new Map();
    this.pending = new Map(); // cid -> element
    this.present = new Map(); // userId -> username
    this.typingUsers = new Map(); // userId -> username
    this.loaded = false;
    this.hasMore = true;
    this.loadingOlder = false;
    this.lastTypingSent = 0;
    this.idleTimer = null;
    this.disposed = false;
  }

  async mount(main) {
    const session = await get(`/api/sessions/${this.sessionId}`);
    if (this.disposed) return; // left before it loaded: never enter the room
    this.session = session;
    this.status = h("span.muted", {}, session.status);
    this.list = h("div.messages", { id: "messages", onscroll: () => this.onScroll() });
    this.typingLine = h("div.typing", { id: "typing" });
    this.presenceList = h("ul.plain.presence", { id: "presence" });
    this.errorLine = h("div.error", { id: "room-error" });
    this.input = h("input", {
      id: "composer", placeholder: "Message the room", autocomplete: "off", maxlength: "8000",
      oninput: () => this.onTyping(),
      onkeydown: (e) => { if (e.key === "Enter") this.send(); },
    });
    const actions = [];
    if (session.organizerId === this.ctx.me.id && session.status === "scheduled") {
      const start = h("button", { type: "button", id: "start-session" }, "Start session");
      start.addEventListener("click", async () => {
        const state = await post(`/api/sessions/${this.sessionId}/start`);
        this.status.textContent = state.status;
        start.remove();
      });
      actions.push(start);
    }
    main.replaceChildren(
      h("div.row", {}, h("h2", {}, session.title), this.status, ...actions),
      h("div.room", {},
        h("section", {},
          this.list, this.typingLine,
          h("div.composer", {}, this.input,
            h("button", { type: "button", id: "send", onclick: () => this.send() }, "Send")),
          this.errorLine),
        h("aside.card", {}, h("h3", {}, "Here now"), this.presenceList)),
    );
    this.off = this.ctx.live.on((frame) => this.onFrame(frame));
    this.ctx.live.join(this.room, { enrol: true });
  }

  dispose() {
    this.disposed = true;
    this.off?.();
    this.ctx.live.leave(this.room);
    clearTimeout(this.idleTimer);
  }

  onFrame(f) {
    if (f.room !== this.room) return;
    switch (f.t) {
      case "joined":
        this.present = new Map(f.presence.map((p) => [p.userId, p.username]));
        this.typingUsers = new Map((f.typing ?? []).map((p) => [p.userId, p.username]));
        this.renderPresence();
        this.renderTyping();
        if (!this.loaded) {
          this.loaded = true;
          this.loadOlder(f.lastSeq + 1).then(() => this.scrollToEnd());
        }
        break;
      case "message":
        this.add(f);
        break;
      case "presence":
        if (f.state === "join") this.present.set(f.userId, f.username);
        else this.present.delete(f.userId);
        this.renderPresence();
        break;
      case "typing":
        if (f.userId === this.ctx.me.id) break;
        if (f.state === "start") this.typingUsers.set(f.userId, f.username);
        else this.typingUsers.delete(f.userId);
        this.renderTyping();
        break;
      case "retracted": {
        const el = this.bySeq.get(f.seq);
        if (el) {
          el.classList.add("retracted");
          el.querySelector(".body").textContent = "(removed by moderation)";
        }
        break;
      }
      case "event":
        if (f.kind.startsWith("session_")) this.status.textContent = f.kind.slice(8);
        break;
      case "error":
        this.errorLine.textContent = f.message;
        if (f.ref) this.pending.get(f.ref)?.classList.add("failed");
        break;
      default:
        break;
    }
  }

  element(m) {
    const retracted = m.retracted === true;
    return h(`div.message${retracted ? ".retracted" : ""}`, { dataset: { seq: m.seq } },
      h("span.seq", {}, `#${m.seq}`),
      h("span.sender", {}, m.sender?.username || "someone"),
      h("span.body", {}, retracted ? "(removed by moderation)" : m.body),
      h("span.muted", {}, ` ${time(m.ts)}`));
  }

  add(m) {
    if (this.bySeq.has(m.seq)) return; // history and live may overlap: each seq once
    const nearEnd = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 60;
    const el = this.element(m);
    this.bySeq.set(m.seq, el);
    if (m.cid && this.pending.has(m.cid)) {
      this.pending.get(m.cid).remove();
      this.pending.delete(m.cid);
    }
    const later = [...this.bySeq.entries()]
      .filter(([seq]) => seq > m.seq)
      .sort(([a], [b]) => a - b)[0];
    const firstPending = this.pending.values().next().value;
    this.list.insertBefore(el, later ? later[1] : firstPending ?? null);
    if (nearEnd) this.scrollToEnd();
  }

  async loadOlder(before) {
    if (this.loadingOlder || !this.hasMore) return;
    const oldest = Math.min(...this.bySeq.keys());
    const from = Number.isFinite(oldest) ? oldest : before;
    if (from <= 1) {
      this.hasMore = false;
      return;
    }
    this.loadingOlder = true;
    try {
      const page = await get(
        `/api/sessions/${this.sessionId}/messages?before=${from}&limit=${PAGE}`);
      const height = this.list.scrollHeight;
      for (const m of page.messages) this.add(m);
      this.hasMore = page.hasMore;
      this.list.scrollTop += this.list.scrollHeight - height; // keep what was in view
    } catch (err) {
      this.errorLine.textContent = err instanceof ApiError ? err.message : String(err);
    } finally {
      this.loadingOlder = false;
    }
  }

  onScroll() {
    if (this.list.scrollTop < 40 && this.loaded) this.loadOlder();
  }

  scrollToEnd() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  onTyping() {
    const now = Date.now();
    if (now - this.lastTypingSent > TYPING_REPEAT_MS) {
      this.lastTypingSent = now;
      this.ctx.live.typing(this.room, "start");
    }
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.idleTimer);
    if (this.lastTypingSent) this.ctx.live.typing(this.room, "stop");
    this.lastTypingSent = 0;
  }

  send() {
    const body = this.input.value.trim();
    if (!body) return;
    this.input.value = "";
    this.errorLine.textContent = "";
    this.stopTyping();
    const cid = this.ctx.live.send(this.room, body);
    const el = h("div.message.pending", { dataset: { cid } },
      h("span.sender", {}, this.ctx.me.username), h("span.body", {}, body));
    this.pending.set(cid, el);
    this.list.append(el);
    this.scrollToEnd();
  }

  renderPresence() {
    this.presenceList.replaceChildren(
      ...[...this.present.entries()].map(([id, name]) => h("li", { dataset: { user: id } }, name)));
  }

  renderTyping() {
    const names = [...this.typingUsers.values()];
    this.typingLine.textContent = names.length === 0 ? ""
      : `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
  }
}
