"""Chat messages in a session's live room: validated, stored durably (group commit), then
acknowledged and published with their room sequence.

Storing goes through shards (CHAT_STORE_SHARDS, 1 by default), each running one statement at a
time on the chat store's own connections (`sessions.db.store_batch`: rooms locked, sequences
handed out, messages and their `message_sent` events written, in one round trip and its own
transaction) and taking every message that arrived meanwhile (up to 500) into its next one
("group commit"): under load many messages share one commit, and at low load a message waits
for nothing. A room always maps to the same shard, so one sender's
messages keep their order. A batch the database refuses for one of its values is split in
halves until the offender is alone: it fails with a permanent error, its neighbours (other
senders, other rooms) are stored. A batch that fails for the database's sake (it is away, a
lock waited too long) fails whole with `unavailable`: retry with the same cid.

Why one shard by default: measured with `python -m bench ws study-hall` (2,000 msg/s over 200
rooms) on a 2-core machine, four shards made PostgreSQL spend 6-7 CPU-seconds per 10 s, one
shard 1 (a quarter of the transactions, each with more messages), at the same or lower latency.

Moderation (CHAT_AI_MODERATION): the local rules run inline (microseconds). The OpenAI check
runs `after` delivery by default (a flagged message is then retracted everywhere and queued for
review), `before` storing (the message is held until it answers), or not at all (`off`).
Whatever it does, one socket's messages are stored in the order they were sent (`SendOrder`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
from aiohttp import web

from ..accounts.auth import Principal
from ..analytics.events import Analytics, Kind, NewEvent
from ..errors import Conflict, Invalid, NotFound, RateLimited, Unavailable
from ..infra import validation
from ..infra.aftercommit import Deferred
from ..infra.dbtypes import Conn
from ..infra.live import LiveEvents
from ..infra.pool import Database
from ..moderation.service import HeldContent, ModerationContext, ModerationService, Verdict
from ..protocol import MAX_AI_BODY_CHARS, MAX_BODY_CHARS, Event, Message, Retracted, Sender
from . import db as sessions_db
from .service import message_frame

log = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_CID_LENGTH = 64
MAX_META_BYTES = 4096
AFTER_CHECKS = 64  # OpenAI checks of delivered messages running at once (a slow upstream must
# not queue a flagged message's retraction behind many others)
ModerationMode = Literal["after", "before", "off"]


@dataclass(frozen=True, slots=True)
class Posted:
    frame: Message
    duplicate: bool


@dataclass(slots=True)
class SendOrder:
    """One socket's place in line: a message is handed to the store only after the one sent
    before it, whatever each waited for before that (moderation, a rule lookup)."""

    after: asyncio.Future[None] | None
    mine: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    async def wait(self) -> None:
        if self.after is not None and not self.after.done():
            await asyncio.shield(self.after)

    def release(self) -> None:
        if not self.mine.done():
            self.mine.set_result(None)


class ChatLimiter:
    """A token bucket per user, shared by the websocket and REST ways of sending (so neither
    sidesteps the other): `rate` messages a second, bursts of `burst`. Per node: behind a
    sticky load balancer a user's sockets and requests meet on one."""

    PURGE_EVERY = 60.0

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[uuid.UUID, tuple[float, float]] = {}  # user -> (tokens, at)
        self._purged = time.monotonic()

    def take(self, user_id: uuid.UUID) -> None:
        now = time.monotonic()
        if now - self._purged > self.PURGE_EVERY:
            self._purge(now)
        tokens, at = self._buckets.get(user_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[user_id] = (tokens, now)
            raise RateLimited(
                "you are sending messages too fast; slow down",
                retry_after=max(1, int((1 - tokens) / self.rate + 0.999)),
            )
        self._buckets[user_id] = (tokens - 1, now)

    def _purge(self, now: float) -> None:
        full = self.burst / self.rate
        self._buckets = {u: v for u, v in self._buckets.items() if now - v[1] < full}
        self._purged = now


def _poison(exc: BaseException) -> bool:
    """The database refused a value (bad data, a broken constraint), not the request as such:
    the batch holding it is split until the offender is alone."""
    return isinstance(
        exc, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError | ValueError | TypeError
    )


_Pending = tuple[dict[str, Any], "asyncio.Future[sessions_db.StoredMessage | None]"]
# Called with a batch's messages and what storing them did (the analytics events its statement
# wrote), to be announced once the batch's senders have their answers.
Recorded = Callable[[list[dict[str, Any]], sessions_db.StoredBatch, Deferred], None]


class _Shard:
    def __init__(
        self,
        db: Database,
        index: int,
        observe: Callable[[int, float], None],
        recorded: Recorded,
    ) -> None:
        self._db = db
        self._index = index
        self._observe = observe
        self._recorded = recorded
        self._queue: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, message: dict[str, Any]) -> asyncio.Future[sessions_db.StoredMessage | None]:
        future: asyncio.Future[sessions_db.StoredMessage | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue.append((message, future))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"chat-store:{self._index}")
        return future

    async def _run(self) -> None:
        try:
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                await self._commit(batch)
        finally:
            self._task = None

    async def _commit(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        deferred = Deferred()
        messages = [m for m, _ in batch]
        try:
            async with self._db.connection() as conn:
                stored = await sessions_db.store_batch(
                    conn, messages, event_kind=Kind.MESSAGE_SENT.value
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 (classified just below)
            if not _poison(exc):
                log.warning("storing %d chat messages failed: %s", len(batch), exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            if len(batch) == 1:
                log.warning("a chat message was refused by the database: %s", exc)
                future = batch[0][1]
                if not future.done():
                    future.set_exception(
                        Invalid("body", "the message holds a value that cannot be stored")
                    )
                return
            half = len(batch) // 2  # in order: the first half's sequences come first
            await self._commit(batch[:half])
            await self._commit(batch[half:])
            return
        self._observe(len(batch), time.perf_counter() - started)
        for (_, future), result in zip(batch, stored.results, strict=True):
            if not future.done():
                future.set_result(result)
        try:
            self._recorded(messages, stored, deferred)
        except Exception:  # (the messages are stored and answered: only announcements are lost)
            log.exception("announcing the events of %d chat messages failed", len(batch))
        await deferred.run()

    async def drain(self) -> None:
        while self._task is not None:
            await asyncio.shield(self._task)


async def warm_store(conn: Conn) -> None:
    """Prepare a chat store connection's statements when it opens (the messages' and their
    analytics events'), so a room's first message after a node starts, or after the store's
    connection was replaced, is stored at the same speed as the next one."""
    await sessions_db.warm_store(conn)
    await Analytics.warm(conn)


class ChatService:
    def __init__(
        self,
        db: Database,
        live: LiveEvents,
        analytics: Analytics,
        *,
        store_db: Database | None = None,
        shards: int = 1,
        moderation: ModerationService | None = None,
        moderation_mode: ModerationMode = "after",
        limiter: ChatLimiter | None = None,
        observe_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.db = db
        # the chat store's own connections: an exhausted request pool does not stall chat
        self.store_db = store_db or db
        self.live = live
        self.analytics = analytics
        self.moderation = moderation
        self.mode: ModerationMode = moderation_mode
        self.limiter = limiter
        observe = observe_batch or (lambda n, seconds: None)
        self._shards = [_Shard(self.store_db, i, observe, self._record_sent) for i in range(shards)]
        self._checks = asyncio.Semaphore(AFTER_CHECKS)
        self._background: set[asyncio.Task[None]] = set()
        if moderation is not None:
            moderation.register_publisher("message", self.publish_approved)

    def _record_sent(
        self, messages: list[dict[str, Any]], stored: sessions_db.StoredBatch, after: Deferred
    ) -> None:
        """The `message_sent` events the batch's statement wrote, one per message newly
        stored (a retried cid is not new; an assistant's answer is not its asker's act, so
        it asks for none), announced to the analytics listeners."""
        written: list[tuple[NewEvent, dict[str, Any]]] = []
        for index, row in stored.events:
            message, result = messages[index], stored.results[index]
            if result is None:  # pragma: no cover (an event is only written with its message)
                continue
            event = NewEvent(
                user_id=message["sender_id"],
                kind=Kind.MESSAGE_SENT,
                occurred_at=result.created_at,
                session_id=message["session_id"],  # (the event got the session's pod)
                meta={"messageId": str(result.id), "seq": result.seq},
                dedupe_key=str(result.id),
            )
            written.append(
                (
                    event,
                    {
                        "id": row["event_id"],
                        "local_date": row["local_date"],
                        "local_hour": row["local_hour"],
                        "pod_id": row["pod_id"],
                    },
                )
            )
        self.analytics.written_with(written, after=after)

    def _shard(self, session_id: uuid.UUID) -> _Shard:
        return self._shards[zlib.crc32(session_id.bytes) % len(self._shards)]

    async def close(self) -> None:
        for shard in self._shards:
            await shard.drain()
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)

    @staticmethod
    def validate(
        *, kind: str, body: str, cid: str | None, file_url: str | None, meta: Any, organizer: bool
    ) -> None:
        """The rules of a chat message, the same for the websocket and REST (fields are named
        as the websocket names them)."""
        if cid is not None:
            if not 1 <= len(cid) <= MAX_CID_LENGTH:
                raise Invalid("cid", f"must be 1-{MAX_CID_LENGTH} characters")
            validation.no_control_characters(cid, "cid")
        if len(body) > MAX_BODY_CHARS:
            raise Invalid("body", f"must be at most {MAX_BODY_CHARS} characters")
        validation.no_control_characters(body, "body")
        if kind == "text" and not body.strip():
            raise Invalid("body", "must not be empty")
        if kind == "file":
            if not file_url or not file_url.startswith(("https://", "http://", "/")):
                raise Invalid("fileUrl", "a file message needs an http(s) fileUrl")
            validation.no_control_characters(file_url, "fileUrl")
            if len(file_url) > 2048:
                raise Invalid("fileUrl", "must be at most 2048 characters")
        elif file_url is not None:
            raise Invalid("fileUrl", "only file messages carry a fileUrl")
        if kind == "system" and not organizer:
            raise Invalid("kind", "only the organizer posts system messages")
        if meta is not None:
            validation.check_input(meta, "meta")
            validation.bounded_json(meta, "meta", MAX_META_BYTES)

    async def post(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        *,
        kind: str,
        body: str,
        cid: str | None,
        file_url: str | None = None,
        meta: dict[str, Any] | None = None,
        is_organizer: bool = False,
        order: SendOrder | None = None,
    ) -> Posted:
        """Store a message and publish it to the room. The caller must already have checked
        that the principal is in the room. Returns once it is durably stored."""
        try:
            self.validate(
                kind=kind, body=body, cid=cid, file_url=file_url, meta=meta, organizer=is_organizer
            )
            if self.limiter is not None:
                self.limiter.take(principal.user_id)
            check_after = False
            if self.moderation is not None and body.strip():
                # Held messages never reach the store, so they take no sequence number.
                await self.moderation.screen(
                    principal,
                    "message",
                    body,
                    {"kind": kind, "body": body, "cid": cid, "fileUrl": file_url, "meta": meta},
                    ModerationContext(session_id=session_id),
                    dedupe_key=f"{session_id}:{cid}" if cid else None,
                    field="body",
                    upstream=self.mode == "before",
                )
                check_after = self.mode == "after" and self.moderation.checks_upstream
            posted = await self._store(
                principal.user_id,
                principal.username,
                session_id,
                kind,
                body,
                cid,
                file_url,
                meta,
                order=order,
            )
        finally:
            if order is not None:
                order.release()
        if check_after and not posted.duplicate:
            self._spawn(self._check_after(principal, session_id, posted.frame))
        return posted

    async def post_ai(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        *,
        body: str,
        meta: dict[str, Any],
        cid: str,
    ) -> Posted:
        """Store the assistant's complete answer to `principal`'s question as an `ai` message
        (sent by the asker, on whose behalf the assistant spoke). Not moderated: the question
        was, and the text is the model's."""
        if not body.strip() or len(body) > MAX_AI_BODY_CHARS:
            raise Invalid("body", f"an AI answer has 1-{MAX_AI_BODY_CHARS} characters")
        return await self._store(
            principal.user_id, principal.username, session_id, "ai", body, cid, None, meta
        )

    async def publish_approved(self, held: HeldContent) -> uuid.UUID | None:
        """Moderation's publisher for messages: store a held message a reviewer approved and
        deliver it with the room's next sequence number; or, for a message that was retracted
        after delivery, restore it in place."""
        if held.session_id is None:
            raise Conflict("the held message has no session", code="invalid_held_item")
        snap = held.snapshot
        if snap.get("retractedId"):
            return await self._restore(held.session_id, uuid.UUID(str(snap["retractedId"])))
        posted = await self._store(
            held.author_id,
            held.author_username,
            held.session_id,
            str(snap.get("kind") or "text"),
            str(snap.get("body") or held.content),
            snap.get("cid"),
            snap.get("fileUrl"),
            snap.get("meta"),
        )
        return uuid.UUID(posted.frame.id)

    async def _store(
        self,
        sender_id: uuid.UUID,
        username: str,
        session_id: uuid.UUID,
        kind: str,
        body: str,
        cid: str | None,
        file_url: str | None,
        meta: dict[str, Any] | None,
        *,
        order: SendOrder | None = None,
    ) -> Posted:
        message = {
            "session_id": session_id,
            "sender_id": sender_id,
            "message_type": kind,
            "content": body,
            "file_url": file_url,
            "metadata": meta,
            "client_message_id": cid,
            "record": kind != "ai",  # (a `message_sent` event: see `_record_sent`)
        }
        if order is not None:
            await order.wait()
        pending = self._shard(session_id).submit(message)
        if order is not None:
            order.release()
        try:
            stored = await pending
        except Invalid:
            raise
        except Exception:  # noqa: BLE001 (the store's failure, whatever it was, is retryable)
            raise Unavailable("the message could not be stored; retry with the same cid") from None
        if stored is None:
            raise Conflict("this session is closed for messages", code="session_closed")
        room = f"session:{session_id}"
        if stored.duplicate:
            # A retry: publish the stored original again. Members drop what they already have
            # (by sequence), and anyone who missed it because the first attempt's node died
            # between commit and publish gets it now.
            rows = await sessions_db.messages_after(
                self.store_db.pool, session_id, stored.seq - 1, 1
            )
            if not rows:
                raise NotFound("session not found")
            frame = message_frame(rows[0], room)
        else:
            frame = Message(
                room=room,
                seq=stored.seq,
                id=str(stored.id),
                sender=Sender(id=str(sender_id), username=username),
                kind=kind,
                body=body,
                ts=stored.created_at.isoformat(),
                cid=cid,
                file_url=file_url,
                meta=meta,
            )
        await self.live.message(frame)
        return Posted(frame, stored.duplicate)

    # --- moderation after delivery ---------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _check_after(self, author: Principal, session_id: uuid.UUID, frame: Message) -> None:
        if self.moderation is None:
            return
        try:
            async with self._checks:
                verdict = await self.moderation.upstream_verdict("message", frame.body)
            if not verdict.allowed:
                await self.retract(author, session_id, frame, verdict)
        except Exception:
            log.exception("checking delivered message %s failed", frame.id)

    async def retract(
        self, author: Principal, session_id: uuid.UUID, frame: Message, verdict: Verdict
    ) -> None:
        """Take a delivered message down everywhere: history shows it removed, every member is
        told (`retracted`), a reviewer gets it in the queue, its author is told."""
        if self.moderation is None:
            return
        row = await sessions_db.set_retracted(self.store_db.pool, uuid.UUID(frame.id), True)
        if row is None:
            return  # the session is gone
        await self.moderation.hold_published(
            author,
            "message",
            frame.body,
            {
                "kind": frame.kind,
                "body": frame.body,
                "cid": frame.cid,
                "fileUrl": frame.file_url,
                "meta": frame.meta,
                "retractedId": frame.id,
                "seq": frame.seq,
            },
            verdict,
            ModerationContext(session_id=session_id),
            dedupe_key=f"{session_id}:{frame.cid}" if frame.cid else None,
        )
        notice = Retracted(
            room=frame.room, seq=frame.seq, id=frame.id, reason=verdict.reason or "removed"
        )
        await self.live.replace(message_frame(row, frame.room), notice)

    async def _restore(self, session_id: uuid.UUID, message_id: uuid.UUID) -> uuid.UUID:
        row = await sessions_db.set_retracted(self.store_db.pool, message_id, False)
        if row is None:
            raise NotFound("the message no longer exists")
        frame = message_frame(row, f"session:{session_id}")
        notice = Event(
            room=frame.room, kind="message_restored", data={"seq": frame.seq, "id": frame.id}
        )
        await self.live.replace(frame, notice)
        return message_id


# the application's key for what this module provides (typed app state)
CHAT = web.AppKey("chat", ChatService)
