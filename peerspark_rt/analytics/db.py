"""SQL for the event log: writing events with their local day, spans and dirty marks."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import asyncpg

from ..infra.dbtypes import Conn


class EventRow(Protocol):
    """What an event to insert carries (events.NewEvent)."""

    @property
    def user_id(self) -> uuid.UUID: ...
    @property
    def kind(self) -> str: ...
    @property
    def occurred_at(self) -> dt.datetime: ...
    @property
    def pod_id(self) -> uuid.UUID | None: ...
    @property
    def session_id(self) -> uuid.UUID | None: ...
    @property
    def value(self) -> float | None: ...
    @property
    def meta(self) -> dict[str, Any]: ...
    @property
    def dedupe_key(self) -> str | None: ...


async def insert_events(conn: Conn, events: Sequence[EventRow]) -> list[tuple[int, asyncpg.Record]]:
    """Insert the events that are new (by user, kind and dedupe key): (input index, row with
    id, local_date, local_hour and the user's time zone) for each one written."""
    # Ids are drawn before the insert so each written row can be matched to its input.
    rows = await conn.fetch(
        """
        WITH input AS (
            SELECT nextval('analytics_events_id_seq') AS id, t.*,
                   peerspark_local_time(t.at, u.timezone) AS local, u.timezone
              FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::uuid[], $5::uuid[],
                          $6::float8[], $7::jsonb[], $8::text[])
                   WITH ORDINALITY AS t(user_id, kind, at, pod_id, session_id, value, meta,
                                        dedupe_key, i)
              LEFT JOIN users u ON u.id = t.user_id),
        written AS (
            INSERT INTO analytics_events
                (id, user_id, event, properties, created_at, occurred_at, local_date,
                 local_hour, pod_id, session_id, value, dedupe_key)
            SELECT id, user_id, kind, meta, NOW(), at, local::date,
                   extract(hour FROM local)::smallint, pod_id, session_id, value, dedupe_key
              FROM input ORDER BY i
            ON CONFLICT (user_id, event, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
            RETURNING id, local_date, local_hour)
        SELECT input.i, written.id, written.local_date, written.local_hour, input.timezone
          FROM written JOIN input USING (id)
         ORDER BY input.i""",
        [e.user_id for e in events],
        [str(e.kind) for e in events],
        [e.occurred_at for e in events],
        [e.pod_id for e in events],
        [e.session_id for e in events],
        [e.value for e in events],
        [e.meta for e in events],
        [e.dedupe_key for e in events],
    )
    return [(int(r["i"]) - 1, r) for r in rows]


async def insert_spans(
    conn: Conn, spans: Sequence[tuple[int, uuid.UUID, dt.date, int, int, str | None]]
) -> None:
    await conn.execute(
        """INSERT INTO analytics_spans (event_id, user_id, local_date, local_hour, seconds, subject)
           SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::date[], $4::smallint[],
                                $5::int[], $6::text[])""",
        [s[0] for s in spans],
        [s[1] for s in spans],
        [s[2] for s in spans],
        [s[3] for s in spans],
        [s[4] for s in spans],
        [s[5] for s in spans],
    )


async def mark_dirty(conn: Conn, pairs: Sequence[tuple[uuid.UUID, dt.date]]) -> None:
    """These users' days need their rollup recomputed."""
    await conn.execute(
        "INSERT INTO analytics_dirty (user_id, day) SELECT * FROM unnest($1::uuid[], $2::date[])",
        [p[0] for p in pairs],
        [p[1] for p in pairs],
    )
