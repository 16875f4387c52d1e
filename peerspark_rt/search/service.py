"""Search (spec: searchResources, getSearchSuggestions) in PostgreSQL.

`GET /api/resources` lists and searches resources in one response: hits (with score and
highlights when searching), the total, and facet counts (type, subject, tags, difficulty), all
counting only resources the caller may see. Sorts: relevance (default when searching), date
(default otherwise), rating, downloads. Posts are searchable with the same query language.
"""

from __future__ import annotations

import uuid

import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..errors import Invalid
from ..infra import readcache, validation
from ..infra.readcache import Encoded, ReadCache
from ..pods.service import PodService
from ..resources import db as resources_db
from ..resources.service import Resource, ResourceService, highlight_html, permission_name
from ..social.feed import Post, PostService
from . import db as search_db

MAX_QUERY = 200
MAX_OFFSET = 10_000


class ResourceQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    search: str | None = None
    type: list[str] = []
    subject: list[str] = []
    tags: list[str] = []
    difficulty: list[str] = []
    min_rating: float | None = None
    max_rating: float | None = None
    pod_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None
    is_public: bool | None = None
    bookmarked: bool = False
    sort: str | None = None
    limit: int = 20
    offset: int = 0


LIST_PARAMS = ("type", "subject", "tags", "difficulty")


class Facet(msgspec.Struct):
    value: str
    count: int


class Aggregations(msgspec.Struct, rename="camel"):
    resource_types: list[Facet]
    subjects: list[Facet]
    tags: list[Facet]
    difficulty_levels: list[Facet]


class ResourceSearchResult(msgspec.Struct, rename="camel"):
    hits: list[Resource]
    total: int
    limit: int
    offset: int
    sort: str
    aggregations: Aggregations


class SharedPage(msgspec.Struct):
    """Resource search's page as nobody sees it (public, active resources only), shared by
    the viewers who may see no more: its response body (most of them get it as it is), its
    hits' ids, and the query's matches beyond the public ones (None: too many to keep;
    search/db.hidden_matches)."""

    body: bytes
    ids: list[uuid.UUID]
    hidden: list[uuid.UUID] | None

    def page(self) -> ResourceSearchResult:
        """The page itself, for a viewer with marks on its hits."""
        return msgspec.json.decode(self.body, type=ResourceSearchResult)


class Mark(msgspec.Struct, array_like=True):
    """A viewer's grant (resources_db.permission), rating and bookmark on one resource, and
    whether they may see it beyond the public ones (search/db.viewer_marks)."""

    id: uuid.UUID
    permission: int | None
    rating: int | None
    bookmarked: bool
    beyond: bool


class Marks(msgspec.Struct):
    marks: list[Mark] | None  # None: too many to keep


class PostSearchQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    q: str
    pod_id: uuid.UUID | None = None
    limit: int = 20
    offset: int = 0


class PostHit(msgspec.Struct, rename="camel"):
    post: Post
    score: float
    highlight: str | None


class PostSearchResult(msgspec.Struct, rename="camel"):
    hits: list[PostHit]
    total: int
    limit: int
    offset: int


class SuggestQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    q: str
    limit: int = 10


class Suggestion(msgspec.Struct):
    text: str
    score: float


class Suggestions(msgspec.Struct):
    query: str
    suggestions: list[Suggestion]


def _paging(limit: int, offset: int, max_limit: int = 100) -> None:
    if not 1 <= limit <= max_limit:
        raise Invalid("limit", f"must be between 1 and {max_limit}")
    if not 0 <= offset <= MAX_OFFSET:
        raise Invalid("offset", f"must be between 0 and {MAX_OFFSET}")


def _text(value: str | None, field: str) -> str | None:
    if value is None or not value.strip():
        return None
    validation.no_control_characters(value, field)
    value = " ".join(value.split())
    if len(value) > MAX_QUERY:
        raise Invalid(field, f"must be at most {MAX_QUERY} characters")
    return value


class SearchService:
    def __init__(
        self,
        resources: ResourceService,
        posts: PostService,
        pods: PodService,
        reads: ReadCache | None = None,
    ) -> None:
        self.resources = resources
        self.posts = posts
        self.pods = pods
        self.db = resources.db
        self.reads = reads or ReadCache(None, "", ttl=0)

    async def resources_page(
        self, principal: Principal, query: ResourceQuery, *, generation: int | None = None
    ) -> Encoded[ResourceSearchResult]:
        """`principal`'s page of resources, as its response body. `generation`: the read
        cache's, read before the request wrote anything (infra/readcache.py); None reads it
        now."""
        _paging(query.limit, query.offset)
        text = _text(query.search, "search")
        for value in query.type:
            validation.one_of(value, "type", resources_db.RESOURCE_TYPES)
        for value in query.difficulty:
            validation.one_of(value, "difficulty", resources_db.DIFFICULTIES)
        for name, values in (("subject", query.subject), ("tags", query.tags)):
            for value in values:
                validation.no_control_characters(value, name)
        for name, rating in (("minRating", query.min_rating), ("maxRating", query.max_rating)):
            if rating is not None and not 0 <= rating <= 5:
                raise Invalid(name, "must be between 0 and 5")
        if (
            query.min_rating is not None
            and query.max_rating is not None
            and query.min_rating > query.max_rating
        ):
            raise Invalid("minRating", "must not be above maxRating")
        sort = validation.one_of(
            query.sort or ("relevance" if text else "date"), "sort", search_db.RESOURCE_SORTS
        )
        if query.pod_id is not None:
            await self.pods.visible_pod(principal, query.pod_id)
        if self.reads.ttl <= 0:
            generation = None  # (caching is off: the session check may still have read one)
        elif generation is None:
            generation = await self.reads.generation(self.db.pool)
        key = f"{principal.role}|{msgspec.json.encode(query).decode()}|{sort}|{text}"

        async def page() -> ResourceSearchResult | Encoded[ResourceSearchResult]:
            # Most viewers see no resource matching a query beyond the public ones: their page
            # is the one nobody gets, with their own grants, ratings and bookmarks on its hits,
            # and that page is computed once for all of them. A bookmark filter, or a search
            # among non-public resources, is the viewer's own by definition; and with caching
            # off, sharing would only add a search.
            if generation is None or query.bookmarked or query.is_public is False:
                return await self._resources_page(principal.user_id, query, text, sort)
            public = await self.reads.get_or_make(
                self.db.pool,
                readcache.RESOURCES_PUBLIC,
                search_db.NOBODY,  # holds only what every viewer may see
                key,
                SharedPage,
                lambda: self._shared_page(query, text, sort),
                generation=generation,
            )
            if public.hidden is None:  # (too many to keep: the viewer's marks would not do)
                return await self._overlaid(principal, query, text, sort, public.page())
            marks = await self.reads.get_or_make(
                self.db.pool,
                readcache.RESOURCES_MARKS,
                principal.user_id,
                "marks",
                Marks,
                lambda: self._marks(principal.user_id),
                generation=generation,
            )
            return await self._as_seen_by(principal, query, text, sort, public, marks)

        return await self.reads.get_or_make_encoded(
            self.db.pool,
            readcache.RESOURCES,
            principal.user_id,  # authorized above; the page is this viewer's own
            key,
            ResourceSearchResult,
            page,
            generation=generation,
        )

    async def _shared_page(
        self, query: ResourceQuery, text: str | None, sort: search_db.ResourceSort
    ) -> SharedPage:
        page = await self._resources_page(search_db.NOBODY, query, text, sort)
        hidden = await search_db.hidden_matches(self.db.pool, self._filters(query, text))
        return SharedPage(readcache.json_body(page), [hit.id for hit in page.hits], hidden)

    async def _marks(self, viewer: uuid.UUID) -> Marks:
        rows = await search_db.viewer_marks(self.db.pool, viewer)
        if rows is None:
            return Marks(None)
        return Marks(
            [
                Mark(r["id"], r["my_permission"], r["my_rating"], r["bookmarked"], r["beyond"])
                for r in rows
            ]
        )

    async def _as_seen_by(
        self,
        principal: Principal,
        query: ResourceQuery,
        text: str | None,
        sort: search_db.ResourceSort,
        public: SharedPage,
        marks: Marks,
    ) -> ResourceSearchResult | Encoded[ResourceSearchResult]:
        """The page nobody gets (`public`) as `principal` sees it: theirs to compute when they
        may see more that matches, else with their grant, rating and bookmark on each hit
        (the shared body itself when they have none there). Their `marks` (kept per viewer,
        not per query) decide it without a query, unless there were too many of theirs or of
        the query's matches beyond the public ones to keep."""
        if marks.marks is None or public.hidden is None:  # (too many of either to keep)
            return await self._overlaid(principal, query, text, sort, public.page())
        hidden = set(public.hidden)
        if any(m.beyond and m.id in hidden for m in marks.marks):
            return await self._resources_page(principal.user_id, query, text, sort)
        mine = {m.id: m for m in marks.marks}
        if not any(hit_id in mine for hit_id in public.ids):
            return Encoded(public.body, ResourceSearchResult)
        page = public.page()
        hits = []
        for hit in page.hits:
            mark = mine.get(hit.id)
            hits.append(
                hit
                if mark is None
                else msgspec.structs.replace(
                    hit,
                    my_permission=permission_name(mark.permission, hit.is_public),
                    my_rating=mark.rating,
                    bookmarked=mark.bookmarked,
                )
            )
        return msgspec.structs.replace(page, hits=hits)

    async def _overlaid(
        self,
        principal: Principal,
        query: ResourceQuery,
        text: str | None,
        sort: search_db.ResourceSort,
        public: ResourceSearchResult,
    ) -> ResourceSearchResult:
        """`_as_seen_by` for a viewer or a query with too much to keep: asks the database."""
        more, mine = await search_db.viewer_overlay(
            self.db.pool, principal.user_id, self._filters(query, text), [h.id for h in public.hits]
        )
        if more:
            return await self._resources_page(principal.user_id, query, text, sort)
        theirs = {r["id"]: r for r in mine}
        hits = []
        for hit in public.hits:
            row = theirs.get(hit.id)
            if row is None:  # gone since the page was made: make it afresh
                return await self._resources_page(principal.user_id, query, text, sort)
            hits.append(
                msgspec.structs.replace(
                    hit,
                    my_permission=permission_name(row["my_permission"], hit.is_public),
                    my_rating=row["my_rating"],
                    bookmarked=row["bookmarked"],
                )
            )
        return msgspec.structs.replace(public, hits=hits)

    @staticmethod
    def _filters(query: ResourceQuery, text: str | None) -> search_db.ResourceFilters:
        return search_db.ResourceFilters(
            text=text,
            types=query.type,
            subjects=[s.strip() for s in query.subject if s.strip()],
            tags=[t.strip().lower() for t in query.tags if t.strip()],
            difficulties=query.difficulty,
            min_rating=query.min_rating,
            max_rating=query.max_rating,
            pod_id=query.pod_id,
            owner_id=query.owner_id,
            is_public=query.is_public,
            bookmarked=query.bookmarked,
        )

    async def _resources_page(
        self,
        viewer: uuid.UUID,
        query: ResourceQuery,
        text: str | None,
        sort: search_db.ResourceSort,
    ) -> ResourceSearchResult:
        summary, rows = await search_db.resource_search(
            self.db.pool,
            viewer,
            self._filters(query, text),
            sort=sort,
            limit=query.limit,
            offset=query.offset,
        )
        hits = [await self.resources.render(r) for r in rows]
        return ResourceSearchResult(
            hits=hits,
            total=int(summary["s_total"]),
            limit=query.limit,
            offset=query.offset,
            sort=sort,
            aggregations=Aggregations(
                resource_types=msgspec.convert(summary["s_resource_types"], list[Facet]),
                subjects=msgspec.convert(summary["s_subjects"], list[Facet]),
                tags=msgspec.convert(summary["s_tags"], list[Facet]),
                difficulty_levels=msgspec.convert(summary["s_difficulty_levels"], list[Facet]),
            ),
        )

    async def posts_page(self, principal: Principal, query: PostSearchQuery) -> PostSearchResult:
        _paging(query.limit, query.offset)
        text = _text(query.q, "q")
        if text is None:
            raise Invalid("q", "must not be empty")
        if query.pod_id is not None:
            await self.pods.visible_pod(principal, query.pod_id)
        rows, total = await search_db.post_page(
            self.db.pool,
            principal.user_id,
            text,
            pod_id=query.pod_id,
            limit=query.limit,
            offset=query.offset,
        )
        hits = [
            PostHit(
                post=await self.posts.render(r, principal),
                score=round(float(r["score"]), 6),
                highlight=highlight_html(r["hl_content"]),
            )
            for r in rows
        ]
        return PostSearchResult(hits, total, query.limit, query.offset)

    async def suggest(self, principal: Principal, query: SuggestQuery) -> Suggestions:
        if not 1 <= query.limit <= 20:
            raise Invalid("limit", "must be between 1 and 20")
        text = _text(query.q, "q")
        if text is None:
            raise Invalid("q", "must not be empty")
        if len(text) > 100:
            raise Invalid("q", "must be at most 100 characters")
        rows = await search_db.suggest_titles(self.db.pool, principal.user_id, text, query.limit)
        return Suggestions(
            text, [Suggestion(r["title"], round(float(r["score"]), 4)) for r in rows]
        )


# the application's key for what this module provides (typed app state)
SEARCH = web.AppKey("search", SearchService)
