// The PeerSpark web client: plain ES modules, no build step. Signed in by an HttpOnly
// cookie; REST writes carry the CSRF token; the live socket gets a short-lived token.

import { ApiError, get, post, setCsrfToken } from "./api.js";
import { h, toast } from "./dom.js";
import { LiveSocket } from "./live.js";
import { RoomView } from "./room.js";
import { renderFeed, renderLogin, renderNotifications, renderPod, renderPods } from "./views.js";

const main = document.getElementById("main");
const ctx = { me: null, live: null, unread: 0, setUnread };
let disposeView = null;

function setUnread(count) {
  ctx.unread = count;
  const badge = document.getElementById("unread");
  badge.textContent = String(count);
  badge.hidden = count === 0;
}

function showConnection(state) {
  const el = document.getElementById("connection");
  el.hidden = false;
  el.className = `connection ${state}`;
  el.textContent = { online: "live", connecting: "reconnecting…", offline: "offline" }[state] ?? state;
  el.dataset.state = state;
}

function onLiveFrame(frame) {
  if (frame.t === "_state") showConnection(frame.state);
  else if (frame.t === "_signed_out") location.reload();
  else if (frame.t === "notification") {
    setUnread(frame.unreadCount);
    toast(frame.title);
  }
}

let routes = 0; // the latest route() call owns the page

async function route() {
  disposeView?.();
  disposeView = null;
  if (!ctx.me) return;
  // Each view renders into a container of its own, put in place at once: a slower earlier
  // view finishing later draws into a detached container instead of over this one.
  const mine = ++routes;
  const here = h("div.view");
  main.replaceChildren(here);
  const current = () => mine === routes;
  const [, view, id] = (location.hash || "#/pods").split("/");
  try {
    if (view === "sessions" && id) {
      const room = new RoomView(ctx, id);
      disposeView = () => room.dispose();
      await room.mount(here);
    } else if (view === "pods" && id) {
      await renderPod(here, id);
    } else if (view === "feed") {
      await renderFeed(here);
    } else if (view === "notifications") {
      const dispose = await renderNotifications(here, ctx);
      if (current()) disposeView = dispose;
      else dispose();
    } else {
      await renderPods(here);
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return location.reload();
    here.replaceChildren(h("p.error", {}, err instanceof ApiError ? err.message : String(err)));
  }
}

async function signedIn(session) {
  setCsrfToken(session.csrfToken);
  ctx.me = session.user;
  document.getElementById("nav").hidden = false;
  document.getElementById("who").textContent = session.user.username;
  const logout = document.getElementById("logout");
  logout.hidden = false;
  logout.onclick = async () => {
    ctx.live.stop();
    await post("/api/web/logout").catch(() => null);
    location.hash = "";
    location.reload();
  };
  ctx.live = new LiveSocket();
  ctx.live.on(onLiveFrame);
  ctx.live.join(`user:${session.user.id}`);
  ctx.live.start();
  get("/api/notifications?limit=1").then((page) => setUnread(page.unreadCount), () => null);
  addEventListener("hashchange", route);
  await route();
}

async function boot() {
  try {
    await signedIn(await get("/api/web/session"));
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) {
      main.replaceChildren(h("p.error", {}, String(err)));
      return;
    }
    renderLogin(main, (session) => signedIn(session));
  }
}

boot();
