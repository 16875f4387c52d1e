"""The web client at /app in a real browser: Debian's Chromium driven by Playwright (no
browser download: `executable_path`). Two people in two browser contexts sign in through the
login form, meet in one study session's room, see each other present and typing, chat, page
back through the history; one goes offline and comes back with every message once, and their
own message written while offline arrives once. Screenshots of the room go to
test-output/browser/ (git-ignored; PEERSPARK_TEST_OUTPUT moves it)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Api, User, listen_live, open_session
from tests.nodes import ROOT

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="the playwright package is not installed (pip install -e .[dev])"
)

CHROMIUM = os.environ.get("PEERSPARK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT = Path(os.environ.get("PEERSPARK_TEST_OUTPUT") or ROOT / "test-output") / "browser"
TIMEOUT_MS = 10_000
SLOW_S = 1.0

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"no Chromium at {CHROMIUM}: install Debian's chromium package "
    "(apt-get install chromium; .ci/run does) or set PEERSPARK_CHROMIUM",
)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        yield chromium
        await chromium.close()


async def signed_in_page(
    browser: Any, base: str, user: User, *, slow: str | None = None
) -> tuple[Any, Any]:
    """A fresh browser context signed in through the login form; requests matching the
    `slow` URL pattern are answered a second late (a slow link, or a busy server)."""
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    if slow is not None:

        async def late(route: Any) -> None:
            await asyncio.sleep(SLOW_S)
            await route.continue_()

        await context.route(slow, late)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    await page.goto(f"{base}/app")
    await page.fill("#login-form input[name=email]", user.email)
    await page.fill("#login-form input[name=password]", user.password)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#nav:not([hidden])")
    await page.wait_for_selector("#connection[data-state=online]")
    assert problems == []
    return context, page


def count_is(selector: str, op: str, n: int) -> str:
    return f"() => document.querySelectorAll('{selector}').length {op} {n}"


async def bodies(page: Any) -> list[tuple[int, str]]:
    """The room's messages as shown, top to bottom: (seq, body)."""
    shown: list[list[Any]] = await page.eval_on_selector_all(
        "#messages .message[data-seq]",
        "els => els.map(e => [Number(e.dataset.seq), e.querySelector('.body').textContent])",
    )
    return [(int(seq), str(body)) for seq, body in shown]


async def test_two_people_chat_in_a_room_and_one_comes_back_from_offline(
    api: Api, browser: Any
) -> None:
    ann, bob = await api.register(), await api.register()
    pod = await api.create_pod(ann, isPublic=True)
    assert (await api.post(f"/api/pods/{pod['id']}/join", bob, json={})).status == 200
    room = await open_session(api, ann, sessionType="pod", podId=pod["id"])
    session_id = room.removeprefix("session:")
    # a history longer than one page (30): the room shows the end, scrolling up the rest
    for n in range(1, 36):
        posted = await api.post(
            f"/api/sessions/{session_id}/messages", ann, json={"content": f"earlier {n}"}
        )
        assert posted.status == 201, posted.body
    base = str(api.client.make_url("")).rstrip("/")
    ann_ctx, ann_page = await signed_in_page(browser, base, ann)
    bob_ctx, bob_page = await signed_in_page(browser, base, bob)
    for page in (ann_page, bob_page):
        await page.goto(f"{base}/app#/sessions/{session_id}")
    # Bob was not yet taking part: his join enrols him. Each sees the other present.
    await ann_page.wait_for_selector(f"#presence li[data-user='{bob.id}']")
    await bob_page.wait_for_selector(f"#presence li[data-user='{ann.id}']")

    await bob_page.wait_for_function(count_is("#messages .message", ">=", 30))
    assert [seq for seq, _ in await bodies(bob_page)] == list(range(6, 36))
    await bob_page.eval_on_selector("#messages", "el => el.scrollTop = 0")  # scroll back
    await bob_page.wait_for_function(count_is("#messages .message", "==", 35))
    assert await bodies(bob_page) == [(n, f"earlier {n}") for n in range(1, 36)]

    await ann_page.type("#composer", "Shall we")
    await bob_page.wait_for_selector(f"#typing:has-text('{ann.username} is typing')")
    await ann_page.type("#composer", " start with problem 3?")
    await ann_page.press("#composer", "Enter")
    await bob_page.wait_for_selector("#messages .message[data-seq='36']")
    await bob_page.wait_for_selector("#typing:empty")
    assert (await bodies(bob_page))[-1] == (36, "Shall we start with problem 3?")

    # Bob's network goes away; Ann keeps talking; Bob writes one message while offline.
    await bob_ctx.set_offline(True)
    await bob_page.wait_for_selector("#connection[data-state=offline]")
    for text in ("first while you were away", "second", "third"):
        await ann_page.fill("#composer", text)
        await ann_page.press("#composer", "Enter")
    await bob_page.fill("#composer", "written on the train")
    await bob_page.press("#composer", "Enter")
    await ann_page.wait_for_selector("#messages .message[data-seq='39']")
    await bob_ctx.set_offline(False)
    await bob_page.wait_for_selector("#connection[data-state=online]")

    expected = [
        "Shall we start with problem 3?",
        "first while you were away",
        "second",
        "third",
        "written on the train",
    ]
    for page in (ann_page, bob_page):
        await page.wait_for_selector("#messages .message[data-seq='40']")
        await page.wait_for_function(count_is("#messages .pending", "==", 0))
    await ann_page.wait_for_timeout(300)  # a duplicate, were there one, would show by now
    for page in (ann_page, bob_page):
        shown = await bodies(page)
        seqs = [seq for seq, _ in shown]
        assert seqs == sorted(set(seqs)), seqs  # each message once, in order
        assert [body for _, body in shown if not body.startswith("earlier")] == expected
    stored = await api.get(f"/api/sessions/{session_id}/messages?after=35", ann)
    assert [m["body"] for m in stored.body["messages"]] == expected  # stored once too

    # Notifications arrive live: Ann likes Bob's post, Bob's badge counts it.
    post = await api.post("/api/posts", bob, json={"content": "Notes from today's session"})
    assert post.status == 201, post.body
    await api.post(f"/api/posts/{post.body['id']}/interactions", ann, json={"type": "like"})
    await bob_page.wait_for_selector("#unread:not([hidden]):has-text('1')")
    await bob_page.wait_for_selector(".toast")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    await ann_page.screenshot(path=str(OUTPUT / "room-ann.png"))
    await bob_page.screenshot(path=str(OUTPUT / "room-bob.png"))
    await ann_ctx.close()
    await bob_ctx.close()


async def test_the_page_shown_is_the_last_one_asked_for(api: Api, browser: Any) -> None:
    """A page that loads slowly never replaces the one the person has moved on to, and a room
    left before it loaded is not entered (nobody sees them present there)."""
    ann, bob = await api.register(), await api.register()
    room = await open_session(api, ann, bob)
    session_id = room.removeprefix("session:")
    base = str(api.client.make_url("")).rstrip("/")

    # The pods list (the page after sign-in) is slow; Bob goes on to the room at once.
    context, page = await signed_in_page(browser, base, bob, slow="**/api/pods*")
    async with page.expect_response("**/api/pods*"):
        await page.goto(f"{base}/app#/sessions/{session_id}")
        await page.wait_for_selector(f"#presence li[data-user='{bob.id}']")
    await page.wait_for_timeout(200)
    assert await page.locator("h2:has-text('My pods')").count() == 0
    assert await page.locator(f"#presence li[data-user='{bob.id}']").is_visible()
    await context.close()

    # The room is slow to load; Ann opens it and leaves for the pods list before it shows.
    watching = await listen_live(api, bob, room)
    context, page = await signed_in_page(browser, base, ann, slow=f"**/api/sessions/{session_id}")
    async with page.expect_response(f"**/api/sessions/{session_id}"):
        await page.goto(f"{base}/app#/sessions/{session_id}")
        await page.goto(f"{base}/app#/pods")
    await page.wait_for_selector("h2:has-text('My pods')")
    await page.wait_for_timeout(1000)
    seen = []
    while not watching.frames.empty():
        seen.append(watching.frames.get_nowait())
    assert not [f for f in seen if f["t"] == "presence" and f["userId"] == str(ann.id)], seen
    assert await page.locator("#messages").count() == 0
    await context.close()


async def test_the_feed_and_pods_pages_render(api: Api, browser: Any) -> None:
    ann = await api.register()
    await api.create_pod(ann, name="Linear algebra circle", isPublic=True)
    await api.post("/api/posts", ann, json={"content": "Eigenvalues tonight"})
    base = str(api.client.make_url("")).rstrip("/")
    context, page = await signed_in_page(browser, base, ann)
    await page.wait_for_selector("#my-pods li:has-text('Linear algebra circle')")
    await page.click("text=Feed")
    await page.wait_for_selector("#feed li:has-text('Eigenvalues tonight')")
    await page.fill("#new-post input[name=content]", "Posted from the browser")
    await page.click("#new-post button")
    await page.wait_for_selector("#feed li:has-text('Posted from the browser')")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(OUTPUT / "feed.png"))
    await context.close()
