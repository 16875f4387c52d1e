"""Grounding: passages from resources the asker may read, found by PostgreSQL full-text search.

Visibility is decided in SQL (resources/db.py `visible`, the vault's one rule) inside the same
query that ranks the passages, so nothing the asker may not read is ever put in a prompt, and
therefore nothing of it can be cited.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ..accounts.auth import Principal
from ..errors import Invalid, NotFound
from ..infra.pool import Database
from ..pods.service import PodService
from . import db as ai_db
from .prompts import Source

MAX_SOURCES = 4
MAX_PASSAGE_CHARS = 1200


@dataclass(frozen=True, slots=True)
class RoomAudience:
    """The answer goes to a session room; `pod_id` is the session's pod (None for group
    sessions), whose shared resources everyone in the room may read."""

    pod_id: uuid.UUID | None


class Retriever:
    def __init__(self, db: Database, pods: PodService) -> None:
        self.db = db
        self.pods = pods

    async def check(
        self,
        principal: Principal,
        pod_id: uuid.UUID | None,
        resource_id: uuid.UUID | None,
        *,
        room_pod: RoomAudience | None = None,
    ) -> None:
        """404 for a pod or resource the asker may not see (as everywhere else). For an answer
        into a live room, 422 for what not everyone in the room may read."""
        if pod_id is not None:
            await self.pods.visible_pod(principal, pod_id)
            if room_pod is not None and pod_id != room_pod.pod_id:
                raise Invalid(
                    "context.podId",
                    "an answer in a session room may only use the session's own pod",
                )
        if resource_id is not None:
            if await ai_db.visible_resource(self.db.pool, resource_id, principal.user_id) is None:
                raise NotFound("resource not found")
            if room_pod is not None and not await ai_db.readable_by_room(
                self.db.pool, resource_id, room_pod.pod_id
            ):
                raise Invalid(
                    "context.resourceId",
                    "not everyone in the session may read this resource: in a room the "
                    "assistant uses public resources and those shared with the session's pod",
                )

    async def sources(
        self,
        principal: Principal,
        question: str,
        *,
        pod_id: uuid.UUID | None,
        resource_id: uuid.UUID | None,
        room_pod: RoomAudience | None = None,
    ) -> list[Source]:
        if pod_id is None and resource_id is None:
            return []
        rows = await ai_db.search_passages(
            self.db.pool,
            principal.user_id,
            question,
            pod_id=pod_id,
            resource_id=resource_id,
            limit=MAX_SOURCES,
            room=room_pod is not None,
            room_pod_id=room_pod.pod_id if room_pod is not None else None,
        )
        return [
            Source(
                label=i,
                resource_id=str(r["id"]),
                title=r["title"],
                passage=(r["passage"] or "")[:MAX_PASSAGE_CHARS],
            )
            for i, r in enumerate(rows, start=1)
        ]
