"""Grounding: passages from resources the asker may read, found by PostgreSQL full-text search.

Visibility is decided in SQL (db/resources.py `visible`, the vault's one rule) inside the same
query that ranks the passages, so nothing the asker may not read is ever put in a prompt, and
therefore nothing of it can be cited.
"""

from __future__ import annotations

import uuid

from ...db import ai as ai_db
from ...db.pool import Database
from ...errors import NotFound
from ..auth import Principal
from ..pods import PodService
from .prompts import Source

MAX_SOURCES = 4
MAX_PASSAGE_CHARS = 1200


class Retriever:
    def __init__(self, db: Database, pods: PodService) -> None:
        self.db = db
        self.pods = pods

    async def check(
        self, principal: Principal, pod_id: uuid.UUID | None, resource_id: uuid.UUID | None
    ) -> None:
        """404 for a pod or resource the asker may not see (as everywhere else)."""
        if pod_id is not None:
            await self.pods.visible_pod(principal, pod_id)
        if resource_id is not None and (
            await ai_db.visible_resource(self.db.pool, resource_id, principal.user_id) is None
        ):
            raise NotFound("resource not found")

    async def sources(
        self,
        principal: Principal,
        question: str,
        *,
        pod_id: uuid.UUID | None,
        resource_id: uuid.UUID | None,
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
