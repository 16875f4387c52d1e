"""Full-text search in PostgreSQL: resources (with facets and typo tolerance) and posts.

Matching: the weighted `search_vector` (title A > description, subject, tags B > content C)
against `websearch_to_tsquery` (quotes, OR, -exclusions as people type them), or, for typos,
the query's trigram word similarity to the title (`<%`, GIN trigram index). Relevance is
ts_rank (which weighs A/B/C as 1.0/0.4/0.2) plus 0.3 x that word similarity.
Highlights come from ts_headline, computed for the returned page only.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from ..infra.dbtypes import Conn, Executor
from ..resources import db as resources_db
from ..resources.db import MARK_END, MARK_START
from ..social.db import posts as posts_db

log = logging.getLogger(__name__)

# Highlight markers: private-use characters, escaped to <mark> after HTML-escaping the text.
_MARKS = f"StartSel={MARK_START}, StopSel={MARK_END}"
TITLE_HEADLINE = f"HighlightAll=true, {_MARKS}"
SNIPPET_HEADLINE = f"MaxWords=35, MinWords=12, ShortWord=2, {_MARKS}"
CONTENT_HEADLINE = f'MaxFragments=3, MaxWords=20, MinWords=8, FragmentDelimiter=" … ", {_MARKS}'

ResourceSort = Literal["relevance", "date", "rating", "downloads"]
RESOURCE_SORTS: tuple[ResourceSort, ...] = ("relevance", "date", "rating", "downloads")
_RESOURCE_ORDER: dict[ResourceSort, str] = {
    "relevance": "{score} DESC, r.created_at DESC, r.id DESC",
    "date": "r.created_at DESC, r.id DESC",
    "rating": "r.rating_average DESC, r.rating_count DESC, r.created_at DESC, r.id DESC",
    "downloads": "r.download_count DESC, r.created_at DESC, r.id DESC",
}


class _Params:
    """Numbered query parameters; $1 is the viewer when there is one."""

    def __init__(self, viewer: uuid.UUID | None) -> None:
        self.values: list[Any] = [] if viewer is None else [viewer]

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


@dataclass(slots=True)
class ResourceFilters:
    text: str | None = None
    types: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    difficulties: list[str] = field(default_factory=list)
    min_rating: float | None = None
    max_rating: float | None = None
    pod_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None
    is_public: bool | None = None
    bookmarked: bool = False


def _where(f: ResourceFilters, params: _Params, *, visibility: bool = True) -> tuple[str, str, str]:
    """(WHERE clause, relevance expression, tsquery expression) for the filters; and, with
    `visibility`, for what the viewer ($1) may see."""
    clauses = [resources_db.visible()] if visibility else ["true"]
    score = "0::float8"
    tsq = "NULL::tsquery"
    if f.text:
        q = params.add(f.text)
        tsq = f"websearch_to_tsquery('english', {q})"
        clauses.append(f"(r.search_vector @@ {tsq} OR {q} <% r.title)")
        score = f"(ts_rank(r.search_vector, {tsq}) + 0.3 * word_similarity({q}, r.title))"
    if f.types:
        clauses.append(f"r.resource_type = ANY({params.add(f.types)}::text[])")
    if f.subjects:
        clauses.append(
            f"lower(r.subject) = ANY({params.add([s.lower() for s in f.subjects])}::text[])"
        )
    if f.tags:
        clauses.append(f"r.tags && {params.add(f.tags)}::text[]")
    if f.difficulties:
        clauses.append(f"r.difficulty_level = ANY({params.add(f.difficulties)}::text[])")
    if f.min_rating is not None:
        clauses.append(f"r.rating_average >= {params.add(f.min_rating)}::numeric")
    if f.max_rating is not None:
        clauses.append(f"r.rating_average <= {params.add(f.max_rating)}::numeric")
    if f.pod_id is not None:
        pod = params.add(f.pod_id)
        clauses.append(
            f"""(r.pod_id = {pod} OR EXISTS (SELECT 1 FROM resource_shares ps
                 WHERE ps.resource_id = r.id AND ps.shared_with_pod_id = {pod}))"""  # noqa: S608 (composed of constants; values are parameters)
        )
    if f.owner_id is not None:
        clauses.append(f"r.owner_id = {params.add(f.owner_id)}")
    if f.is_public is not None:
        clauses.append(f"r.is_public = {params.add(f.is_public)}")
    if f.bookmarked:
        if not visibility:
            raise ValueError("the bookmark filter is the viewer's own")
        clauses.append(
            "EXISTS (SELECT 1 FROM resource_bookmarks b WHERE b.resource_id = r.id"
            " AND b.user_id = $1)"
        )
    return " AND ".join(clauses), score, tsq


# The facets of everything that matched: the open-ended ones (subjects, tags) keep their 20
# commonest values. Named s_*: the page's rows carry `tags` of their own.
_SUMMARY = """SELECT
  (SELECT count(*) FROM matched) AS s_total,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('value', v, 'count', n) ORDER BY n DESC, v),
                   '[]'::jsonb)
   FROM (SELECT resource_type AS v, count(*) AS n FROM matched GROUP BY 1) t) AS s_resource_types,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('value', v, 'count', n) ORDER BY n DESC, v),
                   '[]'::jsonb)
   FROM (SELECT subject AS v, count(*) AS n FROM matched
         WHERE subject IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20) t) AS s_subjects,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('value', v, 'count', n) ORDER BY n DESC, v),
                   '[]'::jsonb)
   FROM (SELECT v, count(*) AS n FROM matched, unnest(tags) AS v
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20) t) AS s_tags,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('value', v, 'count', n) ORDER BY n DESC, v),
                   '[]'::jsonb)
   FROM (SELECT difficulty_level AS v, count(*) AS n FROM matched
         WHERE difficulty_level IS NOT NULL GROUP BY 1) t) AS s_difficulty_levels"""


async def resource_search(
    db: Executor,
    viewer: uuid.UUID,
    filters: ResourceFilters,
    *,
    sort: ResourceSort,
    limit: int,
    offset: int,
) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """The total and facet counts (type, subject, tags, difficulty) of everything that
    matches and the viewer may see, and one page of it with score and (when searching)
    highlights: one statement, so the matching (a full-text and a trigram index scan, and
    the visibility rule) is planned and run once, and the total always matches the hits.
    Returns (summary: s_total, s_resource_types, s_subjects, s_tags, s_difficulty_levels;
    the page's rows)."""
    params = _Params(viewer)
    where, score, tsq = _where(filters, params)
    order = _RESOURCE_ORDER[sort if filters.text or sort != "relevance" else "date"].format(
        score="m.score"
    )
    limit_p, offset_p = params.add(limit), params.add(offset)
    if filters.text:
        highlights = f"""ts_headline('english', page.title, {tsq}, {params.add(TITLE_HEADLINE)})
                           AS hl_title,
                         ts_headline('english', coalesce(page.description, ''), {tsq},
                                     {params.add(SNIPPET_HEADLINE)}) AS hl_description,
                         ts_headline('english', coalesce(page.content, ''), {tsq},
                                     {params.add(CONTENT_HEADLINE)}) AS hl_content"""
    else:
        highlights = "NULL AS hl_title, NULL AS hl_description, NULL AS hl_content"
    rows = await db.fetch(
        f"""WITH matched AS MATERIALIZED (
              SELECT r.id, r.resource_type, r.subject, r.tags, r.difficulty_level,
                     {score} AS score
              FROM resources r WHERE {where}),
            page AS (
              SELECT {resources_db.LIST_COLUMNS}, r.content, m.score,
                     row_number() OVER (ORDER BY {order}) AS ord
              FROM matched m JOIN resources r ON r.id = m.id {resources_db.OWNER_JOIN}
              ORDER BY {order} LIMIT {limit_p} OFFSET {offset_p}),
            summary AS ({_SUMMARY})
            SELECT summary.*, page.*, {highlights}
            FROM summary LEFT JOIN page ON true
            ORDER BY page.ord""",  # noqa: S608 (composed of constants; values are parameters)
        *params.values,
    )
    if not rows:
        raise RuntimeError("the statement returned no row")
    return rows[0], [r for r in rows if r["id"] is not None]


# Nobody: no account has the nil UUID (gen_random_uuid makes version-4 ones), so a page computed
# for it holds exactly the public, active resources, with no ownership, grant, rating or bookmark
# (resources_db.visible); search/service.py shares such pages between viewers.
NOBODY = uuid.UUID(int=0)


async def viewer_overlay(
    db: Executor, viewer: uuid.UUID, filters: ResourceFilters, ids: list[uuid.UUID]
) -> tuple[bool, list[asyncpg.Record]]:
    """For a page computed as NOBODY with `filters`: whether the viewer may see any resource
    that matches them beyond the public, active ones (then the viewer's page differs in its
    hits, total or facets and must be computed for them), and the viewer's grant, rating and
    bookmark on each resource in `ids` (rows: id, my_permission, my_rating, bookmarked).
    Whatever else the viewer may see is theirs, shared with them, or shared with a pod of
    theirs, so only those are matched (by the owner and share indexes)."""
    params = _Params(viewer)
    where, _, _ = _where(filters, params)
    ids_p = params.add(ids)
    rows = await db.fetch(
        f"""WITH theirs AS ({resources_db.THEIRS}),
            beyond AS (
              SELECT EXISTS (
                SELECT 1 FROM theirs t JOIN resources r ON r.id = t.id
                WHERE {where} AND (r.status = 'active' AND r.is_public) IS NOT TRUE) AS found)
            SELECT beyond.found, mine.*
            FROM beyond LEFT JOIN (
              SELECT r.id, {resources_db.VIEWER_COLUMNS}
              FROM resources r WHERE r.id = ANY({ids_p}::uuid[])) mine ON true""",  # noqa: S608 (composed of constants; values are parameters)
        *params.values,
    )
    if not rows:
        raise RuntimeError("the statement returned no row")
    return bool(rows[0]["found"]), [r for r in rows if r["id"] is not None]


# Beyond these, a viewer's marks or the resources matching a query beyond the public ones are
# not kept whole for the shared page (search/service.py asks `viewer_overlay` instead).
MAX_MARKS = 500
MAX_HIDDEN = 1000


async def hidden_matches(db: Executor, filters: ResourceFilters) -> list[uuid.UUID] | None:
    """The resources that match `filters` but are not public and active, whoever may see them
    (None: more than MAX_HIDDEN). A viewer whose own, shared or pod resources beyond the
    public ones include none of these sees exactly the public matches of the query. (Only
    active and hidden ones: no viewer sees a resource in any other state, resources_db
    .visible.)"""
    params = _Params(None)
    where, _, _ = _where(filters, params, visibility=False)
    rows = await db.fetch(
        f"""SELECT r.id FROM resources r
            WHERE {where} AND r.status IN ('active', 'hidden')
              AND (r.status = 'active' AND r.is_public) IS NOT TRUE
            LIMIT {MAX_HIDDEN + 1}""",  # noqa: S608 (composed of constants; values are parameters)
        *params.values,
    )
    return None if len(rows) > MAX_HIDDEN else [r["id"] for r in rows]


async def viewer_marks(db: Executor, viewer: uuid.UUID) -> list[asyncpg.Record] | None:
    """Every resource on which the viewer's page may differ from the page nobody gets: theirs,
    shared with them or with a pod of theirs, rated or bookmarked by them (rows: id,
    my_permission, my_rating, bookmarked, and `beyond`: the viewer may see it and it is not
    public and active). None: more than MAX_MARKS. On any other resource the viewer's grant,
    rating and bookmark are nobody's."""
    rows = await db.fetch(
        f"""WITH theirs AS (
              {resources_db.THEIRS}
              UNION SELECT rr.resource_id FROM resource_ratings rr WHERE rr.user_id = $1
              UNION SELECT rb.resource_id FROM resource_bookmarks rb WHERE rb.user_id = $1)
            SELECT r.id, {resources_db.VIEWER_COLUMNS},
                   ({resources_db.visible()}
                    AND (r.status = 'active' AND r.is_public) IS NOT TRUE) IS TRUE AS beyond
            FROM theirs t JOIN resources r ON r.id = t.id
            LIMIT {MAX_MARKS + 1}""",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
    )
    return None if len(rows) > MAX_MARKS else rows


async def warm(conn: Conn) -> None:
    """Run a text search's statements once on a connection as it opens (they match nothing):
    its server process loads the text-search dictionaries, the trigram operators and the
    tables' catalogs, and plans them, before a request waits for that (~15 ms on a new
    process, 3-4 ms after). Best effort, on whichever request opened the connection: it gives
    up within a second (a lock held on the tables, a slow database) and leaves the connection
    as it was."""
    nothing = ResourceFilters(text="peerspark warm up " + uuid.uuid4().hex)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL statement_timeout = 1000; SET LOCAL lock_timeout = 250")
            await resource_search(conn, NOBODY, nothing, sort="relevance", limit=20, offset=0)
            await hidden_matches(conn, nothing)
            await viewer_marks(conn, NOBODY)
    except asyncpg.PostgresError as exc:  # (a broken connection is not ours to hide)
        log.warning("a new connection's search warm-up gave up: %s", exc)


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def suggest_titles(
    db: Executor, viewer: uuid.UUID, text: str, limit: int
) -> list[asyncpg.Record]:
    """Titles of resources the viewer may see that start with the text, have a word starting
    with it, or are close to it (typos); prefix matches first."""
    escaped = _like_prefix(text)
    return await db.fetch(
        f"""SELECT title, max(score) AS score FROM (
              SELECT r.title,
                     CASE WHEN r.title ILIKE $3 THEN 1 ELSE 0 END
                       + greatest(similarity(r.title, $2), word_similarity($2, r.title))
                       + least(r.download_count, 1000) / 100000.0 AS score
              FROM resources r
              WHERE {resources_db.visible()}
                AND (r.title ILIKE $3 OR r.title ILIKE $4 OR $2 <% r.title)) s
            GROUP BY title ORDER BY score DESC, title LIMIT $5""",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        text,
        f"{escaped}%",
        f"% {escaped}%",
        limit,
    )


async def post_page(
    db: Executor,
    viewer: uuid.UUID,
    text: str,
    *,
    pod_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    """Published posts the viewer may read that match, most relevant first, and the total."""
    where = f"""p.status = 'published' AND {posts_db.visible()}
                AND p.search_vector @@ websearch_to_tsquery('english', $2)
                AND ($3::uuid IS NULL OR p.pod_id = $3)"""
    rows = await db.fetch(
        f"""SELECT page.*,
                   ts_headline('english', page.content, websearch_to_tsquery('english', $2), $6)
                     AS hl_content
            FROM (SELECT {posts_db.POST_COLUMNS},
                         ts_rank(p.search_vector, websearch_to_tsquery('english', $2)) AS score,
                         count(*) OVER () AS total
                  FROM posts p {posts_db.POST_JOINS}
                  WHERE {where}
                  ORDER BY score DESC, p.created_at DESC, p.id DESC LIMIT $4 OFFSET $5) page
            ORDER BY page.score DESC, page.created_at DESC, page.id DESC""",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        text,
        pod_id,
        limit,
        offset,
        CONTENT_HEADLINE,
    )
    if rows:
        return rows, int(rows[0]["total"])
    total = await db.fetchval(f"SELECT count(*) FROM posts p WHERE {where}", viewer, text, pod_id)  # noqa: S608 (composed of constants; values are parameters)
    return rows, int(total)
