"""SQL for posts, their interactions, and the feeds.

Who may read a post is decided in one place, `visible()`: every read path (feeds, a single post,
comments, search, mobile sync) filters with it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

import asyncpg

from ...infra import sql as sql_builder
from ...infra.dbtypes import Conn, Executor

POST_TYPES = ("general", "question", "resource", "milestone", "announcement")
VISIBILITIES = ("public", "pod", "private")
EDITABLE_COLUMNS = frozenset(
    {"content", "post_type", "media_urls", "attachments", "tags", "is_pinned", "visibility"}
)


def audience(p: str = "p", viewer: str = "$1") -> str:
    """SQL true when post `p` is addressed to the viewer, whatever its status: theirs, public
    (outside private pods), or in a pod they actively belong to."""
    return f"""({p}.author_id = {viewer}
           OR ({p}.visibility = 'public'
               AND ({p}.pod_id IS NULL
                    OR (SELECT vp.is_public FROM pods vp WHERE vp.id = {p}.pod_id)))
           OR ({p}.visibility IN ('public', 'pod')
               AND EXISTS (SELECT 1 FROM pod_memberships vm
                           WHERE vm.pod_id = {p}.pod_id AND vm.user_id = {viewer}
                             AND vm.status = 'active')))"""  # noqa: S608 (composed of constants; values are parameters)


def visible(p: str = "p", viewer: str = "$1") -> str:
    """SQL true when the viewer may read post `p`: published (or their own post held for
    review), and addressed to them (`audience`)."""
    return f"""(({p}.status = 'published' OR ({p}.status = 'hidden' AND {p}.author_id = {viewer}))
      AND {audience(p, viewer)})"""


# Everything a client is shown about a post, relative to the viewer ($1).
POST_COLUMNS = """p.id, p.author_id, p.pod_id, p.content, p.post_type, p.media_urls, p.attachments,
    p.tags, p.is_pinned, p.is_anonymous, p.visibility, p.status, p.like_count, p.comment_count,
    p.share_count, p.bookmark_count, p.trending_score, p.created_at, p.updated_at,
    p.accepted_comment_id, u.username AS author_username, u.first_name AS author_first_name,
    u.last_name AS author_last_name, u.avatar_url AS author_avatar_url,
    u.is_verified AS author_is_verified, pd.name AS pod_name,
    EXISTS (SELECT 1 FROM post_interactions li WHERE li.post_id = p.id AND li.user_id = $1
            AND li.interaction_type = 'like') AS liked,
    EXISTS (SELECT 1 FROM post_interactions bi WHERE bi.post_id = p.id AND bi.user_id = $1
            AND bi.interaction_type = 'bookmark') AS bookmarked,
    (SELECT mm.role FROM pod_memberships mm WHERE mm.pod_id = p.pod_id AND mm.user_id = $1
       AND mm.status = 'active') AS my_pod_role"""
POST_JOINS = "LEFT JOIN users u ON u.id = p.author_id LEFT JOIN pods pd ON pd.id = p.pod_id"


INSERT_COLUMNS = EDITABLE_COLUMNS | {
    "id", "author_id", "pod_id", "is_anonymous", "status", "metadata"
}  # fmt: skip


async def insert_post(conn: Conn, values: dict[str, Any]) -> uuid.UUID:
    sql, args = sql_builder.insert("posts", values, INSERT_COLUMNS, suffix="RETURNING id")
    post_id: uuid.UUID = await conn.fetchval(sql, *args)
    return post_id


async def get_visible(db: Executor, viewer: uuid.UUID, post_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {POST_COLUMNS} FROM posts p {POST_JOINS} WHERE p.id = $2 AND {visible()}",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        post_id,
    )


async def set_accepted_answer(conn: Conn, post_id: uuid.UUID, comment_id: uuid.UUID) -> bool:
    """Record the accepted answer; False when it already was this one."""
    status = await conn.execute(
        """UPDATE posts SET accepted_comment_id = $2
           WHERE id = $1 AND accepted_comment_id IS DISTINCT FROM $2""",
        post_id,
        comment_id,
    )
    return status.endswith(" 1")


async def lock(conn: Conn, post_id: uuid.UUID) -> asyncpg.Record | None:
    """The post's moderation-relevant fields, row-locked, whatever its status."""
    return await conn.fetchrow(
        """SELECT id, author_id, pod_id, status, visibility, is_anonymous, is_pinned, content,
                  attachments
           FROM posts WHERE id = $1 FOR UPDATE""",
        post_id,
    )


async def update_post(conn: Conn, post_id: uuid.UUID, changes: dict[str, Any]) -> None:
    sql, args = sql_builder.update(
        "posts",
        changes,
        EDITABLE_COLUMNS,
        where="id = $1",
        where_args=[post_id],
        also="updated_at = NOW()",
    )
    await conn.execute(sql, *args)


async def set_status(conn: Conn, post_id: uuid.UUID, status: str) -> None:
    await conn.execute(
        "UPDATE posts SET status = $2, updated_at = NOW() WHERE id = $1", post_id, status
    )


# --- interactions ---


async def has_interaction(conn: Conn, post_id: uuid.UUID, user_id: uuid.UUID, kind: str) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM post_interactions
                              WHERE post_id = $1 AND user_id = $2 AND interaction_type = $3)""",
            post_id,
            user_id,
            kind,
        )
    )


async def add_interaction(conn: Conn, post_id: uuid.UUID, user_id: uuid.UUID, kind: str) -> bool:
    """Record the interaction; False when it was already there (a concurrent duplicate)."""
    row = await conn.fetchval(
        """INSERT INTO post_interactions (post_id, user_id, interaction_type) VALUES ($1, $2, $3)
           ON CONFLICT (post_id, user_id, interaction_type) DO NOTHING RETURNING id""",
        post_id,
        user_id,
        kind,
    )
    return row is not None


async def remove_interaction(conn: Conn, post_id: uuid.UUID, user_id: uuid.UUID, kind: str) -> bool:
    row = await conn.fetchval(
        """DELETE FROM post_interactions
           WHERE post_id = $1 AND user_id = $2 AND interaction_type = $3 RETURNING id""",
        post_id,
        user_id,
        kind,
    )
    return row is not None


async def first_like_notice(conn: Conn, post_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Record that the author hears of this user's like; False when they already did."""
    row = await conn.fetchval(
        """INSERT INTO post_like_notices (post_id, user_id) VALUES ($1, $2)
           ON CONFLICT (post_id, user_id) DO NOTHING RETURNING 1""",
        post_id,
        user_id,
    )
    return row is not None


async def counts(conn: Executor, post_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT like_count, comment_count, share_count, bookmark_count FROM posts WHERE id = $1",
        post_id,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


# --- feeds ---

FeedSource = Literal["all", "my-pods", "trending", "pod", "pod-trending", "bookmarked"]

# Sort keys (all descending) per source, as (expression, SQL type) pairs.
_TIME = (("p.created_at", "timestamptz"), ("p.id", "uuid"))
_SCORE = (("p.trending_score", "float8"), ("p.id", "uuid"))
_PINNED = (("p.is_pinned", "boolean"), ("p.created_at", "timestamptz"), ("p.id", "uuid"))
_BOOKMARK = (("i.created_at", "timestamptz"), ("i.id", "uuid"))
SORT_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "all": _TIME,
    "my-pods": _TIME,
    "trending": _SCORE,
    "pod": _PINNED,
    "pod-trending": _SCORE,
    "bookmarked": _BOOKMARK,
}
_FIRST_KEY_PARAM = 3  # $1 viewer, $2 limit, then the cursor's key values, then the pod id
_POD_SOURCES = ("pod", "pod-trending", "bookmarked")


def _stream(
    keys: tuple[tuple[str, str], ...], source_sql: str, where: str, has_cursor: bool
) -> str:
    """One index-ordered stream: rows of `source_sql` matching `where`, after the cursor."""
    select = ", ".join(f"{expr} AS k{i}" for i, (expr, _) in enumerate(keys))
    order = ", ".join(f"{expr} DESC" for expr, _ in keys)
    keyset = ""
    if has_cursor:
        left = ", ".join(expr for expr, _ in keys)
        right = ", ".join(
            f"${_FIRST_KEY_PARAM + i}::{sql_type}" for i, (_, sql_type) in enumerate(keys)
        )
        keyset = f" AND ({left}) < ({right})"
    return (
        f"SELECT p.id, {select} FROM {source_sql} WHERE {where}{keyset} ORDER BY {order} LIMIT $2"  # noqa: S608 (composed of constants; values are parameters)
    )


def _public(keys: tuple[tuple[str, str], ...], has_cursor: bool) -> str:
    return _stream(
        keys,
        "posts p",
        """p.status = 'published' AND p.visibility = 'public'
           AND (p.pod_id IS NULL OR (SELECT sp.is_public FROM pods sp WHERE sp.id = p.pod_id))""",
        has_cursor,
    )


def _my_pods(keys: tuple[tuple[str, str], ...], has_cursor: bool) -> str:
    # One short index scan per pod I belong to (LATERAL), merged by the outer ORDER BY.
    inner = _stream(
        keys,
        "posts p",
        "p.pod_id = m.pod_id AND p.status = 'published' AND p.visibility IN ('public', 'pod')",
        has_cursor,
    )
    columns = ", ".join(f"x.k{i}" for i in range(len(keys)))
    return f"""SELECT x.id, {columns} FROM pod_memberships m CROSS JOIN LATERAL ({inner}) x
               WHERE m.user_id = $1 AND m.status = 'active'"""  # noqa: S608 (composed of constants; values are parameters)


def _mine(keys: tuple[tuple[str, str], ...], has_cursor: bool) -> str:
    return _stream(
        keys, "posts p", "p.author_id = $1 AND p.status IN ('published', 'hidden')", has_cursor
    )


def feed_sql(source: FeedSource, has_cursor: bool) -> str:
    """The page query for a feed. Each stream only yields posts the viewer may read, so a page
    is never cut short by filtering; `visible()` is applied again on the merged page."""
    keys = SORT_KEYS[source]
    pod = f"${_FIRST_KEY_PARAM + (len(keys) if has_cursor else 0)}"
    match source:
        case "all":
            streams = [
                _public(keys, has_cursor),
                _my_pods(keys, has_cursor),
                _mine(keys, has_cursor),
            ]
        case "my-pods":
            streams = [_my_pods(keys, has_cursor)]
        case "trending":
            streams = [_public(keys, has_cursor), _my_pods(keys, has_cursor)]
        case "pod":
            streams = [
                _stream(
                    keys,
                    "posts p",
                    f"p.pod_id = {pod} AND p.status IN ('published', 'hidden') AND {visible()}",
                    has_cursor,
                )
            ]
        case "pod-trending":
            streams = [
                _stream(
                    keys,
                    "posts p",
                    f"p.pod_id = {pod} AND p.status = 'published' AND {visible()}",
                    has_cursor,
                )
            ]
        case "bookmarked":
            streams = [
                _stream(
                    keys,
                    "post_interactions i JOIN posts p ON p.id = i.post_id",
                    f"""i.user_id = $1 AND i.interaction_type = 'bookmark' AND {visible()}
                        AND ({pod}::uuid IS NULL OR p.pod_id = {pod})""",
                    has_cursor,
                )
            ]
    names = [f"k{i}" for i in range(len(keys))]
    # UNION removes a post found by two streams (a public post in my pod, my own post); the
    # outer LIMIT also bounds the per-pod LATERAL stream, which yields `limit` rows per pod.
    union = " UNION ".join(f"({s})" for s in streams)
    merged_order = ", ".join(f"{n} DESC" for n in names)
    page = f"SELECT id, {', '.join(names)} FROM ({union}) c ORDER BY {merged_order} LIMIT $2"  # noqa: S608 (composed of constants; values are parameters)
    page_keys = ", ".join(f"page.{n}" for n in names)
    key_order = ", ".join(f"page.{n} DESC" for n in names)
    return f"""WITH page AS ({page})
        SELECT {POST_COLUMNS}, {page_keys}
        FROM page JOIN posts p ON p.id = page.id {POST_JOINS}
        WHERE {visible()}
        ORDER BY {key_order}"""  # noqa: S608 (composed of constants; values are parameters)


async def feed_page(
    db: Executor,
    viewer: uuid.UUID,
    source: FeedSource,
    *,
    pod_id: uuid.UUID | None,
    after: tuple[Any, ...] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to `limit` rows of the feed after the cursor key `after` (None: from the top)."""
    sql = feed_sql(source, after is not None)
    pod = (pod_id,) if source in _POD_SOURCES else ()
    return await db.fetch(sql, viewer, limit, *(after or ()), *pod)


# --- mobile sync ---


async def changed_since(
    db: Executor, viewer: uuid.UUID, since: dt.datetime, limit: int
) -> list[asyncpg.Record]:
    """Posts the viewer may read that were created or edited after `since`, oldest first."""
    return await db.fetch(
        f"""SELECT {POST_COLUMNS} FROM posts p {POST_JOINS}
            WHERE p.updated_at > $2 AND {visible()}
            ORDER BY p.updated_at, p.id LIMIT $3""",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        since,
        limit,
    )


async def gone_since(
    db: Executor, viewer: uuid.UUID, since: dt.datetime, limit: int
) -> list[asyncpg.Record]:
    """Posts (id, updated_at) deleted, removed or held for review after `since` that the
    viewer could read before, oldest change first: others' posts addressed to them
    (`audience`, the rule `visible` applies), and their own deleted or removed ones (they still
    see their own held posts)."""
    return await db.fetch(
        f"""SELECT id, updated_at FROM (
              SELECT p.id, p.updated_at FROM posts p
              WHERE p.updated_at > $2 AND p.status IN ('deleted', 'removed', 'hidden')
                AND p.author_id IS DISTINCT FROM $1 AND {audience()}
              UNION
              SELECT p.id, p.updated_at FROM posts p
              WHERE p.updated_at > $2 AND p.author_id = $1 AND p.status IN ('deleted', 'removed')
            ) gone
            ORDER BY updated_at, id LIMIT $3""",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        since,
        limit,
    )


# --- moderation ---


async def describe_many(db: Executor, post_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT id, author_id, pod_id, status, content FROM posts WHERE id = ANY($1::uuid[])""",
        post_ids,
    )


async def is_visible(db: Executor, viewer: uuid.UUID, post_id: uuid.UUID) -> bool:
    return bool(
        await db.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM posts p WHERE p.id = $2 AND {visible()})",  # noqa: S608 (composed of constants; values are parameters)
            viewer,
            post_id,
        )
    )
