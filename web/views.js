// The page's other views: log in (or sign up), pods, a pod's sessions, the feed, notifications.

import { ApiError, get, post } from "./api.js";
import { h, time } from "./dom.js";

function problem(err) {
  if (!(err instanceof ApiError)) return String(err);
  const details = err.body?.error?.details ?? [];
  return details.length ? details.map((d) => `${d.field}: ${d.reason}`).join("; ") : err.message;
}

function field(label, props) {
  return h("label", {}, label, h("input", props));
}

export function renderLogin(main, onSignedIn) {
  const error = h("p.error", { id: "login-error" });
  const login = h("form.stack", { id: "login-form" },
    field("Email", { name: "email", type: "email", required: true, autocomplete: "username" }),
    field("Password", { name: "password", type: "password", required: true,
      autocomplete: "current-password" }),
    h("label.row", {}, h("input", { name: "rememberMe", type: "checkbox" }), "Remember me"),
    h("button", { type: "submit" }, "Log in"));
  const signup = h("form.stack", { id: "signup-form" },
    field("Email", { name: "email", type: "email", required: true }),
    field("Username", { name: "username", required: true }),
    field("First name", { name: "firstName", required: true }),
    field("Last name", { name: "lastName", required: true }),
    field("Password", { name: "password", type: "password", required: true,
      autocomplete: "new-password" }),
    h("button", { type: "submit" }, "Sign up"));
  const signIn = async (email, password, rememberMe) => {
    onSignedIn(await post("/api/web/login", { email, password, rememberMe }));
  };
  login.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(login);
    try {
      await signIn(form.get("email"), form.get("password"), form.get("rememberMe") === "on");
    } catch (err) {
      error.textContent = problem(err);
    }
  });
  signup.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = Object.fromEntries(new FormData(signup));
    try {
      await post("/api/auth/register", body);
      await signIn(body.email, body.password, false);
    } catch (err) {
      error.textContent = problem(err);
    }
  });
  main.replaceChildren(
    h("div.card", {}, h("h2", {}, "Log in"), login),
    h("div.card", {}, h("h2", {}, "New here? Sign up"), signup),
    error);
}

function podItem(pod, action) {
  return h("li", { dataset: { pod: pod.id } },
    h("a", { href: `#/pods/${pod.id}` }, pod.name), " ",
    h("span.muted", {}, `${pod.subject} · ${pod.currentMemberCount} members`), " ", action);
}

export async function renderPods(main) {
  const mine = await get("/api/pods?member=true&limit=50");
  const error = h("p.error");
  const create = h("form.stack", { id: "create-pod" },
    field("Name", { name: "name", required: true }),
    field("Subject", { name: "subject", required: true }),
    h("label.row", {}, h("input", { name: "isPublic", type: "checkbox", checked: true }),
      "Anyone may find and join it"),
    h("button", { type: "submit" }, "Create pod"));
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(create);
    try {
      const pod = await post("/api/pods", {
        name: form.get("name"), subject: form.get("subject"), isPublic: form.get("isPublic") === "on",
      });
      location.hash = `#/pods/${pod.id}`;
    } catch (err) {
      error.textContent = problem(err);
    }
  });
  const results = h("ul.plain", { id: "pod-results" });
  const search = h("form.row", { id: "find-pods" },
    h("input", { name: "search", placeholder: "Find public pods" }),
    h("button", { type: "submit" }, "Search"));
  search.addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = new FormData(search).get("search");
    const found = await get(`/api/pods?isPublic=true&search=${encodeURIComponent(q)}`);
    results.replaceChildren(...found.pods.map((pod) => podItem(pod, pod.myRole ? null
      : h("button", { type: "button", onclick: async () => {
        try {
          await post(`/api/pods/${pod.id}/join`, {});
          location.hash = `#/pods/${pod.id}`;
        } catch (err) {
          error.textContent = problem(err);
        }
      } }, "Join"))));
  });
  main.replaceChildren(
    h("div.card", {}, h("h2", {}, "My pods"),
      mine.pods.length ? h("ul.plain", { id: "my-pods" }, mine.pods.map((p) => podItem(p)))
        : h("p.muted", {}, "No pods yet: create one or find one.")),
    h("div.card", {}, h("h3", {}, "Find a pod"), search, results),
    h("div.card", {}, h("h3", {}, "Create a pod"), create),
    error);
}

export async function renderPod(main, podId) {
  const [pod, sessions] = await Promise.all([
    get(`/api/pods/${podId}`),
    get(`/api/sessions?podId=${podId}&limit=50`),
  ]);
  const error = h("p.error");
  const schedule = h("form.row", { id: "schedule-session" },
    h("input", { name: "title", placeholder: "Session title", required: true }),
    h("button", { type: "submit" }, "Schedule (starts in 5 minutes)"));
  schedule.addEventListener("submit", async (event) => {
    event.preventDefault();
    const start = new Date(Date.now() + 5 * 60_000);
    try {
      const session = await post("/api/sessions", {
        title: new FormData(schedule).get("title"),
        sessionType: "pod",
        podId,
        startTime: start.toISOString(),
        endTime: new Date(start.getTime() + 3_600_000).toISOString(),
        timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
      });
      location.hash = `#/sessions/${session.id}`;
    } catch (err) {
      error.textContent = problem(err);
    }
  });
  main.replaceChildren(
    h("div.card", {}, h("h2", {}, pod.name),
      h("p.muted", {}, `${pod.subject} · ${pod.currentMemberCount} members · ${pod.isPublic ? "public" : "private"}`),
      pod.description ? h("p", {}, pod.description) : null),
    h("div.card", {}, h("h3", {}, "Study sessions"),
      sessions.sessions.length
        ? h("ul.plain", { id: "sessions" }, sessions.sessions.map((s) => h("li", {},
          h("a", { href: `#/sessions/${s.id}` }, s.title), " ",
          h("span.muted", {}, `${s.status} · ${new Date(s.startTime).toLocaleString()}`))))
        : h("p.muted", {}, "No sessions yet."),
      schedule, error));
}

function postItem(p) {
  const likes = h("span", {}, String(p.likeCount));
  const like = h("button.link", { type: "button" }, p.liked ? "Unlike" : "Like");
  like.addEventListener("click", async () => {
    const result = await post(`/api/posts/${p.id}/interactions`, { type: "like" });
    likes.textContent = String(result.likeCount);
    like.textContent = result.active ? "Unlike" : "Like";
  });
  return h("li", { dataset: { post: p.id } },
    h("div", {}, h("strong", {}, p.author?.username ?? "anonymous"),
      p.podName ? h("span.muted", {}, ` in ${p.podName}`) : null,
      h("span.muted", {}, ` · ${time(p.createdAt)}`)),
    h("div", {}, p.content),
    h("div.row.muted", {}, likes, "likes ·", String(p.commentCount), "comments ·", like));
}

export async function renderFeed(main) {
  const list = h("ul.plain", { id: "feed" });
  const more = h("button", { type: "button" }, "More");
  const error = h("p.error");
  let cursor = null;
  const load = async () => {
    const page = await get(`/api/feed?type=all&limit=20${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    list.append(...page.posts.map(postItem));
    cursor = page.nextCursor;
    more.hidden = !cursor;
  };
  more.addEventListener("click", load);
  const compose = h("form.row", { id: "new-post" },
    h("input", { name: "content", placeholder: "Share something with everyone", required: true }),
    h("button", { type: "submit" }, "Post"));
  compose.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const p = await post("/api/posts", { content: new FormData(compose).get("content") });
      compose.reset();
      list.prepend(postItem(p));
    } catch (err) {
      error.textContent = problem(err);
    }
  });
  main.replaceChildren(h("div.card", {}, h("h2", {}, "Feed"), compose, error, list, more));
  await load();
}

export function notificationItem(n) {
  return h(`li.notification${n.isRead ? "" : ".unread"}`, { dataset: { notification: n.id } },
    n.title, " ", h("span.muted", {}, time(n.createdAt)));
}

export async function renderNotifications(main, ctx) {
  const page = await get("/api/notifications?limit=50");
  ctx.setUnread(page.unreadCount);
  const list = h("ul.plain", { id: "notifications" }, page.notifications.map(notificationItem));
  const readAll = h("button", { type: "button" }, "Mark all read");
  readAll.addEventListener("click", async () => {
    const result = await post("/api/notifications/read-all");
    ctx.setUnread(result.unreadCount);
    for (const li of list.querySelectorAll(".unread")) li.classList.remove("unread");
  });
  main.replaceChildren(h("div.card", {}, h("h2", {}, "Notifications"), readAll, list));
  // live: new notifications arrive on the user's room while this view is open
  return ctx.live.on((f) => {
    if (f.t === "notification") list.prepend(notificationItem({ ...f, isRead: false }));
  });
}
