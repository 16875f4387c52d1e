"""The daily study analytics (`study_analytics`), kept current from the event log.

Every event marks its user's local day out of date (`analytics_dirty`, in the event's own
transaction, so no committed event can be missed); the `analytics_rollup` job, every
ANALYTICS_ROLLUP_INTERVAL seconds (30) across the cluster, takes the marks and recomputes those
(user, day) rows from that day's events and spans. A row is therefore a pure function of the
events: recomputing it again gives the same row, and a late event (a mobile client's offline
act) corrects its day.

The same pass recomputes the members' points in their pods that day (`pod_contributions`,
CONTRIBUTION_POINTS), and so `pod_memberships.contribution_score`.

`streak_days` counts consecutive local days with study time, so a day whose study changed
carries the change forward to the following days that have rows (until a streak is unchanged).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from ..infra.jobs import Job, PermanentError
from ..infra.pool import Database
from . import db as analytics_db

log = logging.getLogger(__name__)

BATCH = 5000  # marks taken per transaction

# A member's contribution to a pod: points per event in the pod (kind -> (points, plus one per
# ten minutes of its value)). Acts others value count for their author (an accepted answer, a
# like received); attending counts by the time spent.
CONTRIBUTION_POINTS: dict[str, tuple[int, bool]] = {
    "post_created": (5, False),
    "comment_created": (2, False),
    "message_sent": (1, False),
    "session_left": (0, True),  # a point per 10 minutes attended
    "answer_accepted": (10, False),
    "resource_shared": (3, False),
    "focus_block_completed": (2, False),
    "like_received": (1, False),
}
MAX_ROUNDS = 50  # batches per job run (a backlog beyond it waits for the next run)


class Rollups:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def run(self, job: Job) -> None:
        """`analytics_rollup`: recompute the days events marked; with {"date": "YYYY-MM-DD"},
        first mark every user active on that local date (a rebuild of the day)."""
        if "date" in job.payload:
            try:
                day = dt.date.fromisoformat(str(job.payload["date"]))
            except ValueError as exc:
                raise PermanentError(f"bad date in payload: {exc}") from None
            async with self.db.transaction() as conn:
                marked = await analytics_db.mark_day_dirty(conn, day)
            log.info("analytics day marked for a rebuild", extra={"date": str(day), "n": marked})
        rows = await self.catch_up()
        if rows:
            log.info("analytics rolled up", extra={"rows": rows})

    async def catch_up(self) -> int:
        """Recompute every marked day; returns how many (user, day) rows were recomputed."""
        total = 0
        for _ in range(MAX_ROUNDS):
            done = await self._round()
            total += done
            if done == 0:
                break
        return total

    async def _round(self) -> int:
        """One batch of marks, taken and recomputed in one transaction: a failure puts the
        marks back (the transaction rolls back) for the next run."""
        async with self.db.transaction() as conn:
            marks = await analytics_db.take_dirty(conn, BATCH)
            if not marks:
                return 0
            pending: dict[dt.date, set[uuid.UUID]] = {}
            for user_id, day in marks:
                pending.setdefault(day, set()).add(user_id)
            done = 0
            # (the carrying forward stops at the first day without a row: nothing follows it)
            while pending:
                day = min(pending)
                users = sorted(pending.pop(day))
                changed = await analytics_db.rollup_day(conn, day, users)
                await analytics_db.contributions_day(conn, day, users, CONTRIBUTION_POINTS)
                done += len(users)
                if changed:
                    pending.setdefault(day + dt.timedelta(days=1), set()).update(changed)
            return done
