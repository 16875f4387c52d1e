"""Weekly leagues (README, "Leagues"): a user's first points of an ISO week (UTC) put them in
a league of ~LEAGUE_SIZE people of their tier; when the week is over the `leagues_close` job
ranks each league by the week's points and moves the top up a tier and the bottom down
(`rules.league_moves`), telling everyone who moved. A week is closed once (its
`league_weeks_closed` row is written in the same transaction as the moves)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from aiohttp import web

from ..infra.jobs import Job
from ..infra.live import LiveEvents
from ..infra.pool import Database
from ..notifications.effects import AfterCommit
from ..notifications.service import NewNotification, NotificationService
from . import db as game_db
from .rules import LEAGUE_SIZE, LEAGUE_TIERS, league_moves, week_key

log = logging.getLogger(__name__)


class Leagues:
    def __init__(self, db: Database, live: LiveEvents, notifications: NotificationService) -> None:
        self.db = db
        self.live = live
        self.notifications = notifications

    async def run(self, job: Job) -> None:
        """`leagues_close` (see `close`)."""
        await self.close()

    async def close(self, now: dt.datetime | None = None) -> int:
        """Close every week that is over and not closed yet; how many weeks were closed."""
        current = week_key(now or dt.datetime.now(dt.UTC))
        closed = 0
        for week in await game_db.open_weeks(self.db.pool, current):
            if await self.close_week(week):
                closed += 1
        return closed

    async def close_week(self, week: str) -> bool:
        effects = AfterCommit(self.live, self.notifications)
        async with self.db.transaction() as conn:
            if not await game_db.close_week(conn, week):
                return False
            moved = 0
            changed: dict[uuid.UUID, int] = {}
            for league in await game_db.leagues_of_week(conn, week):
                tier, number = league["tier"], league["league"]
                rows = await game_db.league_standings(conn, week, tier, number)
                moves = league_moves([(str(r["user_id"]), int(r["points"])) for r in rows], tier)
                new_tiers = {r["user_id"]: moves[str(r["user_id"])] for r in rows}
                await game_db.set_tiers(conn, new_tiers)
                for place, r in enumerate(rows, start=1):
                    new = new_tiers[r["user_id"]]
                    if new == tier:
                        continue
                    moved += 1
                    changed[r["user_id"]] = new
                    up = new > tier
                    name = LEAGUE_TIERS[new]
                    effects.push(
                        await self.notifications.store(
                            conn,
                            NewNotification(
                                recipient_id=r["user_id"],
                                notification_type="league_result",
                                title=(
                                    f"Promoted to the {name} league!"
                                    if up
                                    else f"Moved down to the {name} league"
                                ),
                                message=f"You finished #{place} of {len(rows)} in week {week}.",
                                action_url="/leagues",
                                metadata={
                                    "week": week,
                                    "place": place,
                                    "from": tier,
                                    "to": new,
                                    "promoted": up,
                                },
                            ),
                        )
                    )
            # who already earned points in a later week (before this job ran) entered its league
            # at their old tier: they move to one of their new tier
            for later in await game_db.leave_later_leagues(conn, week, list(changed)):
                await game_db.enter_league(
                    conn, later["week"], later["user_id"], changed[later["user_id"]], LEAGUE_SIZE
                )
        await effects.run()
        log.info("league week closed", extra={"week": week, "moved": moved})
        return True


LEAGUES = web.AppKey("leagues", Leagues)
