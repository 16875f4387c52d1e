"""Feed query plans on a realistic volume: python -m bench.feed_explain [--posts N].

Creates a scratch database next to DATABASE_URL's (default: the local PostgreSQL at
127.0.0.1:5432), applies schema.sql, seeds users, pods, memberships, posts and interactions,
then prints EXPLAIN (ANALYZE, BUFFERS) of every feed query - first page and a deep page - for
a typical member of a few pods, and a summary line per query: time, rows read from posts, the
indexes used, and whether posts was ever read by a sequential scan. Standalone on purpose (the
`python -m bench` harness is separate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from typing import Any

import asyncpg

from peerspark_rt.infra.pool import apply_schema
from peerspark_rt.social.db import posts as posts_db

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "peerspark_bench_feed"


async def seed(conn: asyncpg.Connection, users: int, pods: int, posts: int) -> None:
    # Triggers off while bulk loading; the counters are computed once at the end.
    await conn.execute("SET session_replication_role = replica")
    await conn.execute(
        """INSERT INTO users (email, username, password_hash, first_name, last_name)
           SELECT 'u' || g || '@bench.local', 'u' || g, 'x', 'Bench', 'User' || g
           FROM generate_series(1, $1) g""",
        users,
    )
    await conn.execute(
        """INSERT INTO pods (name, subject, is_public, max_members, creator_id)
           SELECT 'Pod ' || g, 'Subject ' || (g % 40), g % 5 <> 0, 10000,
                  (SELECT id FROM users ORDER BY id OFFSET (g % $2) LIMIT 1)
           FROM generate_series(1, $1) g""",
        pods,
        users,
    )
    # Every user belongs to 5 pods (roughly 5 * users / pods members per pod).
    await conn.execute(
        """WITH u AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM users),
                p AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM pods)
           INSERT INTO pod_memberships (pod_id, user_id, role, status)
           SELECT p.id, u.id, 'member', 'active'
           FROM u CROSS JOIN generate_series(0, 4) k
           JOIN p ON p.n = ((u.n * 7 + k * 13) % $1) + 1
           ON CONFLICT DO NOTHING""",
        pods,
    )
    await conn.execute(
        """WITH u AS (SELECT array_agg(id) AS ids FROM users),
                p AS (SELECT array_agg(id) AS ids FROM pods)
           INSERT INTO posts (author_id, pod_id, content, post_type, visibility, tags, created_at,
                              updated_at)
           SELECT u.ids[1 + abs(hashint4(g)) % array_length(u.ids, 1)],
                  CASE WHEN g % 10 < 2 THEN NULL
                       ELSE p.ids[1 + abs(hashint4(-g)) % array_length(p.ids, 1)] END,
                  'Post ' || g || ' about integrals, enzymes and the French revolution',
                  (ARRAY['general','question','resource','milestone'])[1 + g % 4],
                  CASE WHEN g % 10 < 2 THEN 'public'
                       WHEN g % 10 < 4 THEN 'public'
                       WHEN g % 10 < 9 THEN 'pod' ELSE 'private' END,
                  ARRAY['tag' || (g % 50)],
                  NOW() - (g % 129600) * interval '1 minute' - (g / 129600) * interval '1 second',
                  NOW() - (g % 129600) * interval '1 minute'
           FROM generate_series(1, $1) g, u, p""",
        posts,
    )
    # Likes: 1-9 per post, more on recent ones.
    await conn.execute(
        """WITH u AS (SELECT array_agg(id) AS ids FROM users),
                ps AS (SELECT id, row_number() OVER (ORDER BY created_at DESC) AS n FROM posts)
           INSERT INTO post_interactions (post_id, user_id, interaction_type, created_at)
           SELECT ps.id, u.ids[1 + abs(hashint4(ps.n::int * 10 + k)) % array_length(u.ids, 1)],
                  'like', NOW() - (k * interval '1 minute')
           FROM ps, u, generate_series(0, 8) k
           WHERE k < 1 + (9 * 1000 / (ps.n + 1000))
           ON CONFLICT DO NOTHING"""
    )
    # Bookmarks: people bookmark what they can read - about 1 in 40 posts of their pods.
    await conn.execute(
        """INSERT INTO post_interactions (post_id, user_id, interaction_type, created_at)
           SELECT p.id, m.user_id, 'bookmark', p.created_at + interval '1 hour'
           FROM pod_memberships m JOIN posts p ON p.pod_id = m.pod_id
           WHERE p.visibility <> 'private'
             AND abs(hashint4(hashtext(p.id::text || m.user_id::text))) % 40 = 0
           ON CONFLICT DO NOTHING"""
    )
    await conn.execute("SET session_replication_role = origin")
    await conn.execute(
        """UPDATE posts p SET like_count = c.likes, bookmark_count = c.bookmarks
           FROM (SELECT post_id,
                        count(*) FILTER (WHERE interaction_type = 'like') AS likes,
                        count(*) FILTER (WHERE interaction_type = 'bookmark') AS bookmarks
                 FROM post_interactions GROUP BY post_id) c
           WHERE c.post_id = p.id"""
    )
    await conn.execute("VACUUM ANALYZE")


def _walk(plan: dict[str, Any], out: list[dict[str, Any]]) -> None:
    out.append(plan)
    for child in plan.get("Plans", []):
        _walk(child, out)


def summarize(plan_json: Any) -> dict[str, Any]:
    root = plan_json[0]
    nodes: list[dict[str, Any]] = []
    _walk(root["Plan"], nodes)
    on_posts = [n for n in nodes if n.get("Relation Name") == "posts"]
    return {
        "ms": round(root["Execution Time"], 2),
        "indexes": sorted({n["Index Name"] for n in nodes if "Index Name" in n}),
        "seq_scan_posts": any(n["Node Type"] == "Seq Scan" for n in on_posts),
        "posts_rows_read": sum(
            int(n.get("Actual Rows", 0)) * int(n.get("Actual Loops", 1)) for n in on_posts
        ),
    }


async def explain(
    conn: asyncpg.Connection,
    source: posts_db.FeedSource,
    viewer: uuid.UUID,
    pod: uuid.UUID | None,
    after: tuple[Any, ...] | None,
) -> tuple[str, dict[str, Any]]:
    sql = posts_db.feed_sql(source, after is not None)
    args: list[Any] = [viewer, 21, *(after or ())]
    if source in ("pod", "pod-trending", "bookmarked"):
        args.append(pod if source != "bookmarked" else None)
    text = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args))
    raw = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
    return text, summarize(json.loads(raw))


async def deep_key(
    conn: asyncpg.Connection,
    source: posts_db.FeedSource,
    viewer: uuid.UUID,
    pod: uuid.UUID | None,
    depth: int,
) -> tuple[Any, ...] | None:
    """The sort key of the row `depth` rows down the feed, or half way down a shorter one
    (to explain a page deep in the feed)."""
    total = 0
    after: tuple[Any, ...] | None = None
    while True:  # measure the feed first
        args0: list[Any] = [viewer, 1000, *(after or ())]
        if source in ("pod", "pod-trending", "bookmarked"):
            args0.append(pod if source != "bookmarked" else None)
        rows0 = await conn.fetch(posts_db.feed_sql(source, after is not None), *args0)
        total += len(rows0)
        if len(rows0) < 1000 or total >= depth * 2:
            break
        after = tuple(rows0[-1][f"k{i}"] for i in range(len(posts_db.SORT_KEYS[source])))
    after = None
    left = min(depth, total // 2)
    while left > 0:
        step = min(left, 500)
        args: list[Any] = [viewer, step, *(after or ())]
        if source in ("pod", "pod-trending", "bookmarked"):
            args.append(pod if source != "bookmarked" else None)
        rows = await conn.fetch(posts_db.feed_sql(source, after is not None), *args)
        if not rows:
            return after
        keys = len(posts_db.SORT_KEYS[source])
        after = tuple(rows[-1][f"k{i}"] for i in range(keys))
        left -= len(rows)
    return after


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--depth", type=int, default=2_000, help="rows down for the deep page")
    parser.add_argument("--quiet", action="store_true", help="summaries only, no plans")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    admin = os.environ.get("DATABASE_URL", DEFAULT_DSN)
    base = admin.rsplit("/", 1)[0]
    conn = await asyncpg.connect(admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    await conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    await conn.close()
    dsn = f"{base}/{BENCH_DB}"
    await apply_schema(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await seed(conn, args.users, args.pods, args.posts)
        counts = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM pods) AS pods,
                      (SELECT count(*) FROM pod_memberships) AS memberships,
                      (SELECT count(*) FROM posts) AS posts,
                      (SELECT count(*) FROM post_interactions) AS interactions"""
        )
        print(
            f"seeded in {time.perf_counter() - started:.1f}s: "
            + ", ".join(f"{k}={v}" for k, v in dict(counts or {}).items())
        )
        # A typical member: in 5 pods, with bookmarks, and authored posts.
        viewer = await conn.fetchval(
            """SELECT i.user_id FROM post_interactions i
               WHERE i.interaction_type = 'bookmark'
                 AND (SELECT count(*) FROM pod_memberships m WHERE m.user_id = i.user_id) >= 5
               GROUP BY i.user_id ORDER BY count(*) DESC, i.user_id LIMIT 1"""
        )
        pod = await conn.fetchval(
            """SELECT p.id FROM pods p JOIN pod_memberships m ON m.pod_id = p.id
               WHERE m.user_id = $1 ORDER BY p.id LIMIT 1""",
            viewer,
        )
        print(f"viewer {viewer}, pod {pod}\n")
        summary: list[tuple[str, str, dict[str, Any]]] = []
        sources: tuple[posts_db.FeedSource, ...] = (
            "all", "my-pods", "trending", "bookmarked", "pod", "pod-trending",
        )  # fmt: skip
        for source in sources:
            for page in ("first", "deep"):
                after = None
                if page == "deep":
                    after = await deep_key(conn, source, viewer, pod, args.depth)
                text, facts = await explain(conn, source, viewer, pod, after)
                summary.append((source, page, facts))
                if not args.quiet:
                    print(f"=== {source} ({page} page)\n{text}\n")
        print(f"{'feed':<14}{'page':<7}{'ms':>9}{'posts rows':>12}  seq scan  feed indexes")
        for name, page, facts in summary:
            print(
                f"{name:<14}{page:<7}{facts['ms']:>9}{facts['posts_rows_read']:>12}  "
                f"{'YES' if facts['seq_scan_posts'] else 'no':<8}  "
                + ", ".join(i for i in facts["indexes"] if i.startswith("idx_"))
            )
    finally:
        await conn.close()
    if not args.keep:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
