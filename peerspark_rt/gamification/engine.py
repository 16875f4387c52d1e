"""The gamification engine: applies each analytics event once (points, streak, challenges,
achievements, league entry), and answers the profile, achievements and leaderboards.

Exactly once: every event's effect is one `point_awards` row ('event', its id), written in
the same transaction as the points, streak and challenge progress it causes, under the lock
of the user's `user_gamification` row. The engine hears events live (an analytics listener,
after their commit, on the node that wrote them) and a periodic job (`gamification_catch_up`)
applies whatever the listener missed (a node that died between a commit and its
announcement); whichever comes second finds the award row and does nothing. A retried act
writes no second event (analytics' dedupe keys), so it earns nothing twice either.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..analytics.events import AnalyticsEvent, Kind
from ..errors import Conflict, NotFound
from ..infra.dbtypes import Conn
from ..infra.jobs import Job
from ..infra.live import LiveEvents
from ..infra.pool import Database
from ..notifications.effects import AfterCommit
from ..notifications.service import NewNotification, NotificationService
from ..pods.service import PodService
from . import db as game_db
from .achievements import METRICS, parse
from .challenges import CHALLENGE_METRICS, challenge_target
from .leaderboard import (
    Boards,
    Leaderboard,
    LeaderboardEntry,
    LeaderboardQuery,
    Ranked,
    validate,
    writes_for,
)
from .rules import (
    LEAGUE_SIZE,
    LEAGUE_TIERS,
    POINTS,
    STREAK_KINDS,
    Streak,
    level_view,
    local_day,
    period_of,
    periods_at,
    streak_today,
    study_day,
    study_minutes,
    week_key,
)
from .scores import ScoreWrite

log = logging.getLogger(__name__)

CATCH_UP_BATCH = 500
CATCH_UP_ROUNDS = 20
# seconds one run may apply events for: a backlog is worked off over several runs, so a run
# never holds a worker slot (or a stopping worker) for long
CATCH_UP_BUDGET = 15.0
SETTLE = dt.timedelta(minutes=10)  # an event older than this has surely committed or not
LISTENER_GRACE = dt.timedelta(seconds=30)  # what the listener has surely heard by now
ACHIEVEMENTS_TTL = 30.0  # seconds the active achievements are cached per node
SWEEP_BATCH = 1000
CURSOR = "events"
WORKERS = 4  # events of different users applied side by side
QUEUE_LIMIT = 25_000  # events waiting per worker; more are left to the catch-up job
APPLY_TIMEOUT = 30.0  # seconds one event may take


# ------------------------------------------------------------------------------ views


class Profile(msgspec.Struct, rename="camel"):
    level: int
    total_points: int
    experience_points: int
    next_level_points: int
    study_streak: int
    longest_streak: int
    badges_earned: int
    rank: int
    streak_freezes: int
    challenges_completed: int
    league: LeagueView | None


class LeagueView(msgspec.Struct, rename="camel"):
    week: str
    tier: int
    tier_name: str
    league: int
    rank: int
    size: int


class LeagueMember(msgspec.Struct, rename="camel"):
    rank: int
    user_id: str
    username: str
    points: int
    is_me: bool


class LeagueStandings(msgspec.Struct, rename="camel"):
    week: str
    tier: int | None
    tier_name: str | None
    league: int | None
    members: list[LeagueMember]


class Progress(msgspec.Struct, rename="camel"):
    current: float
    target: float
    percent: float


class AchievementView(msgspec.Struct, rename="camel"):
    id: str
    code: str | None
    name: str
    description: str | None
    icon: str | None
    category: str | None
    criteria: dict[str, Any]
    points: int
    rarity: str
    unlocked: bool
    unlocked_at: str | None
    claimed: bool
    claimed_at: str | None
    progress: Progress | None


class AchievementList(msgspec.Struct, rename="camel"):
    achievements: list[AchievementView]
    unlocked: int
    total: int


class ClaimResult(msgspec.Struct, rename="camel"):
    achievement_id: str
    points_awarded: int
    total_points: int
    level: int


class Gamification:
    def __init__(
        self,
        db: Database,
        live: LiveEvents,
        notifications: NotificationService,
        pods: PodService,
        boards: Boards,
    ) -> None:
        self.db = db
        self.live = live
        self.notifications = notifications
        self.pods = pods
        self.boards = boards
        self._achievements: tuple[float, list[asyncpg.Record]] = (0.0, [])
        self._queues: list[asyncio.Queue[AnalyticsEvent]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.dropped = 0  # events not queued (a full queue): the catch-up job applies them

    # ------------------------------------------------------------------ applying events

    async def on_event(self, event: AnalyticsEvent) -> None:
        """The analytics listener: hands the event to the worker that owns its user and
        returns at once (the other listeners, the admins' live counters, do not wait for a
        transaction). One worker per user keeps each user's events in order; WORKERS of them
        apply different users' events side by side."""
        if event.kind.value not in POINTS:
            return
        if not self._workers:
            self._queues = [asyncio.Queue() for _ in range(WORKERS)]
            self._workers = [
                asyncio.create_task(self._work(q), name=f"gamification-{i}")
                for i, q in enumerate(self._queues)
            ]
        queue = self._queues[event.user_id.int % WORKERS]
        if queue.qsize() >= QUEUE_LIMIT:
            self.dropped += 1  # the catch-up job applies it
            return
        self._pending += 1
        self._idle.clear()
        queue.put_nowait(event)

    async def _work(self, queue: asyncio.Queue[AnalyticsEvent]) -> None:
        while True:
            event = await queue.get()
            try:
                async with asyncio.timeout(APPLY_TIMEOUT):
                    await self.apply(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                # logged; the catch-up job applies the event later
                log.exception("applying %s #%d failed", event.kind, event.id)
            finally:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait (at most `timeout` seconds) until every event handed over was applied."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def close(self) -> None:
        try:
            await self.drain(5.0)
        except TimeoutError:
            log.warning("closing with %d events not applied (the catch-up job will)", self._pending)
        for task in self._workers:
            task.cancel()
        await self.boards.close()

    async def apply(self, event: AnalyticsEvent) -> bool:
        """Apply one event (once: False when it was applied before)."""
        effects = AfterCommit(self.live, self.notifications)
        writes: list[ScoreWrite] = []
        async with self.db.transaction() as conn:
            applied = await self._apply(conn, event, effects, writes)
        await effects.run()
        await self.boards.write(writes)
        if applied and event.kind == Kind.RESOURCE_RATED and event.dedupe_key:
            await self._helpful_owner(event.dedupe_key)
        return applied

    async def _apply(
        self,
        conn: Conn,
        event: AnalyticsEvent,
        effects: AfterCommit,
        writes: list[ScoreWrite],
    ) -> bool:
        user = event.user_id
        state = await game_db.lock_state(conn, user)
        if state is None:
            return False
        kind = event.kind.value
        if await game_db.is_applied(conn, user, "event", str(event.id)):
            return False
        rule = POINTS.get(kind)
        points = 0
        if rule is not None:
            used = await game_db.points_of_kind_on(conn, user, event.local_date, kind)
            points = max(0, min(rule.earned(event.value), rule.daily_cap - used))
        minutes = study_minutes(kind, event.value, event.session_id)
        await game_db.insert_award(
            conn,
            user_id=user,
            source="event",
            source_key=str(event.id),
            kind=kind,
            pod_id=event.pod_id,
            local_date=event.local_date,
            awarded_at=event.occurred_at,
            points=points,
            study_minutes=minutes,
        )
        streak = _streak(state)
        new_streak = streak
        if kind in STREAK_KINDS and (kind != "session_left" or minutes > 0):
            new_streak = study_day(streak, event.local_date)
        state = await self._credit(
            conn, state, points, minutes, event.pod_id, event.occurred_at, new_streak, effects,
            writes,
        )  # fmt: skip
        await self._challenges(conn, state, event, points, effects, writes)
        await self._evaluate(conn, user, {kind}, effects, writes)
        return True

    async def _credit(
        self,
        conn: Conn,
        state: asyncpg.Record,
        points: int,
        minutes: int,
        pod_id: uuid.UUID | None,
        at: dt.datetime,
        streak: Streak,
        effects: AfterCommit,
        writes: list[ScoreWrite],
    ) -> asyncpg.Record:
        """Add points and study minutes to the user's totals and boards, set the streak; the
        state as it is now."""
        user = state["user_id"]
        total = int(state["total_points"] or 0) + points
        before = level_view(int(state["total_points"] or 0))
        after = level_view(total)
        await game_db.save_state(
            conn,
            user,
            total_points=total,
            level=after.level,
            experience_points=after.experience_points,
            study_streak=streak.current,
            longest_streak=streak.longest,
            last_study_date=streak.last_day,
            streak_freezes=streak.freezes,
        )
        deltas: list[tuple[str, str, str, int]] = []
        for period in periods_at(at):
            for metric, amount in (("points", points), ("study", minutes)):
                if amount > 0:
                    deltas.append((metric, "global", period.key, amount))
                    if pod_id is not None:
                        deltas.append((metric, str(pod_id), period.key, amount))
        totals = await game_db.add_scores(conn, user, deltas)
        changed = streak.current != int(state["study_streak"] or 0)
        writes.extend(
            writes_for(
                user,
                [(r["metric"], r["scope"], r["period"], int(r["score"])) for r in totals],
                streak.current if changed else None,
                at,
            )
        )
        if points > 0:
            tier = int(state["league_tier"] or 0)
            await game_db.enter_league(conn, week_key(at), user, tier, LEAGUE_SIZE)
        if after.level > before.level:
            effects.event(f"user:{user}", "level_up", {"level": after.level, "totalPoints": total})
        fresh = await game_db.lock_state(conn, user)
        if fresh is None:  # pragma: no cover (the row is locked by this transaction)
            raise RuntimeError("game state vanished")
        return fresh

    async def award(
        self,
        conn: Conn,
        state: asyncpg.Record,
        source: str,
        key: str,
        points: int,
        effects: AfterCommit,
        writes: list[ScoreWrite],
    ) -> asyncpg.Record | None:
        """Grant points for a claim or a reward once ((source, key) per user); the new state,
        or None when it was granted before."""
        now = dt.datetime.now(dt.UTC)
        fresh = await game_db.insert_award(
            conn,
            user_id=state["user_id"],
            source=source,
            source_key=key,
            kind=source,
            pod_id=None,
            local_date=local_day(now, state["timezone"]),
            awarded_at=now,
            points=points,
            study_minutes=0,
        )
        if not fresh:
            return None
        return await self._credit(
            conn, state, points, 0, None, now, _streak(state), effects, writes
        )

    async def _challenges(
        self,
        conn: Conn,
        state: asyncpg.Record,
        event: AnalyticsEvent,
        points: int,
        effects: AfterCommit,
        writes: list[ScoreWrite],
    ) -> None:
        user = event.user_id
        for row in await game_db.running_participations(conn, user, event.occurred_at):
            criteria = row["criteria"] or {}
            measure = CHALLENGE_METRICS.get(str(criteria.get("metric")))
            if measure is None:
                continue
            if row["pod_id"] is not None and event.pod_id != row["pod_id"]:
                continue  # a pod's challenge counts what is done in the pod
            amount = measure(event.kind.value, event.value, event.session_id, points)
            if amount <= 0:
                continue
            target = challenge_target(criteria)
            value = int(row["progress_value"]) + amount
            await game_db.set_progress(conn, row["id"], user, value, target)
            data: dict[str, Any] = {
                "challengeId": str(row["id"]),
                "title": row["title"],
                "progress": min(value, target),
                "target": target,
                "completed": value >= target,
            }
            if value >= target:
                reward = int(row["reward_points"] or 0)
                rank = await game_db.complete_challenge(conn, row["id"], user, reward)
                data["rank"] = rank
                fresh = await self.award(
                    conn, state, "challenge", str(row["id"]), reward, effects, writes
                )
                if fresh is not None:
                    state = fresh
                effects.push(
                    await self.notifications.store(
                        conn,
                        NewNotification(
                            recipient_id=user,
                            notification_type="challenge_completed",
                            title=f"Challenge completed: {row['title']}",
                            message=f"You finished #{rank} and earned {reward} points.",
                            action_url=f"/challenges/{row['id']}",
                            metadata={"challengeId": str(row["id"]), "rank": rank},
                        ),
                    )
                )
                await self._evaluate(conn, user, {"challenge"}, effects, writes)
            effects.event(f"user:{user}", "challenge_progress", data)

    # ------------------------------------------------------------------ achievements

    async def _active(self, conn: Conn) -> list[asyncpg.Record]:
        cached_at, rows = self._achievements
        if time.monotonic() - cached_at > ACHIEVEMENTS_TTL:
            rows = await game_db.active_achievements(conn)
            self._achievements = (time.monotonic(), rows)
        return rows

    async def _evaluate(
        self,
        conn: Conn,
        user: uuid.UUID,
        triggers: set[str],
        effects: AfterCommit,
        writes: list[ScoreWrite],
    ) -> None:
        """Unlock the achievements `triggers` may have completed (each once: the unique
        (user, achievement) row decides between concurrent evaluations)."""
        candidates = []
        for row in await self._active(conn):
            criteria = parse(row["criteria"])
            if criteria is not None and METRICS[criteria.metric].triggers & triggers:
                candidates.append((row, criteria))
        if not candidates:
            return
        have = await game_db.earned(conn, user)
        state = await game_db.state(conn, user)
        if state is None or state["user_id"] is None:
            return
        for row, criteria in candidates:
            if row["id"] in have:
                continue
            value = await METRICS[criteria.metric].read(conn, user, criteria.raw, state)
            if value < criteria.target:
                continue
            unlocked = await game_db.unlock(
                conn, user, row["id"], {"current": value, "target": criteria.target}
            )
            if unlocked is None:
                continue
            data = {
                "achievementId": str(row["id"]),
                "code": row["code"],
                "name": row["name"],
                "points": int(row["points"] or 0),
                "rarity": row["rarity"],
                "unlockedAt": unlocked["earned_at"].isoformat(),
            }
            effects.event(f"user:{user}", "achievement_unlocked", data)
            effects.push(
                await self.notifications.store(
                    conn,
                    NewNotification(
                        recipient_id=user,
                        notification_type="achievement",
                        title=f"Achievement unlocked: {row['name']}",
                        message=row["description"],
                        action_url=f"/achievements/{row['id']}",
                        metadata={"achievementId": str(row["id"])},
                    ),
                )
            )

    async def _helpful_owner(self, resource_key: str) -> None:
        """A rating may make its resource's owner's achievement: evaluate it for them (apart
        from the rater's transaction, so no two users' rows are ever locked together)."""
        try:
            resource_id = uuid.UUID(resource_key)
        except ValueError:
            return
        owner = await game_db.resource_owner(self.db.pool, resource_id)
        if owner is None:
            return
        effects = AfterCommit(self.live, self.notifications)
        writes: list[ScoreWrite] = []
        async with self.db.transaction() as conn:
            if await game_db.lock_state(conn, owner) is None:
                return
            await self._evaluate(conn, owner, {"resource_rated"}, effects, writes)
        await effects.run()
        await self.boards.write(writes)

    async def achievements(self, user: uuid.UUID) -> AchievementList:
        async with self.db.transaction() as conn:
            rows = await game_db.active_achievements(conn)
            have = await game_db.earned(conn, user)
            state = await game_db.state(conn, user)
            views = [await self._view(conn, user, row, have.get(row["id"]), state) for row in rows]
        return AchievementList(views, sum(1 for v in views if v.unlocked), len(views))

    async def achievement(self, user: uuid.UUID, achievement_id: uuid.UUID) -> AchievementView:
        async with self.db.transaction() as conn:
            row = await game_db.achievement(conn, achievement_id)
            if row is None:
                raise NotFound("achievement not found")
            have = await game_db.earned(conn, user)
            state = await game_db.state(conn, user)
            return await self._view(conn, user, row, have.get(row["id"]), state)

    async def _view(
        self,
        conn: Conn,
        user: uuid.UUID,
        row: asyncpg.Record,
        mine: asyncpg.Record | None,
        state: asyncpg.Record | None,
    ) -> AchievementView:
        criteria = parse(row["criteria"])
        progress = None
        if criteria is not None:
            if mine is not None:
                current = criteria.target
            elif state is None or state["user_id"] is None:
                current = 0.0
            else:
                current = await METRICS[criteria.metric].read(conn, user, criteria.raw, state)
            current = min(current, criteria.target)
            percent = 100.0 if criteria.target <= 0 else round(100 * current / criteria.target, 1)
            progress = Progress(current, criteria.target, percent)
        return AchievementView(
            id=str(row["id"]),
            code=row["code"],
            name=row["name"],
            description=row["description"],
            icon=row["icon"],
            category=row["category"],
            criteria=row["criteria"] if isinstance(row["criteria"], dict) else {},
            points=int(row["points"] or 0),
            rarity=row["rarity"] or "common",
            unlocked=mine is not None,
            unlocked_at=mine["earned_at"].isoformat() if mine is not None else None,
            claimed=mine is not None and mine["claimed_at"] is not None,
            claimed_at=(
                mine["claimed_at"].isoformat()
                if mine is not None and mine["claimed_at"] is not None
                else None
            ),
            progress=progress,
        )

    async def claim(self, user: uuid.UUID, achievement_id: uuid.UUID) -> ClaimResult:
        """Claim an unlocked achievement's points (once)."""
        effects = AfterCommit(self.live, self.notifications)
        writes: list[ScoreWrite] = []
        async with self.db.transaction() as conn:
            row = await game_db.achievement(conn, achievement_id)
            if row is None:
                raise NotFound("achievement not found")
            state = await game_db.lock_state(conn, user)
            if state is None:
                raise NotFound("user not found")
            claimed = await game_db.mark_claimed(conn, user, achievement_id)
            if claimed is None:
                have = await game_db.earned(conn, user)
                if achievement_id not in have:
                    raise Conflict("this achievement is not unlocked yet", code="not_unlocked")
                raise Conflict("this achievement was claimed already", code="already_claimed")
            points = int(row["points"] or 0)
            fresh = await self.award(
                conn, state, "achievement", str(achievement_id), points, effects, writes
            )
            state = fresh or state
            await self._evaluate(conn, user, {"achievement"}, effects, writes)
        await effects.run()
        await self.boards.write(writes)
        return ClaimResult(
            str(achievement_id), points, int(state["total_points"] or 0), int(state["level"] or 1)
        )

    # ------------------------------------------------------------------ reading

    async def profile(self, user: uuid.UUID) -> Profile:
        state = await game_db.state(self.db.pool, user)
        if state is None:
            raise NotFound("user not found")
        total = int(state["total_points"] or 0)
        view = level_view(total)
        today = local_day(dt.datetime.now(dt.UTC), state["timezone"])
        streak = streak_today(_streak(state), today)
        rank = await game_db.global_rank(self.db.pool, total, user)
        week = week_key(dt.datetime.now(dt.UTC))
        league = None
        membership = await game_db.league_of(self.db.pool, week, user)
        if membership is not None:
            standings = await game_db.league_standings(
                self.db.pool, week, membership["tier"], membership["league"]
            )
            position = next(
                (i for i, r in enumerate(standings) if r["user_id"] == user), len(standings)
            )
            league = LeagueView(
                week, membership["tier"], _tier_name(membership["tier"]), membership["league"],
                position + 1, len(standings),
            )  # fmt: skip
        return Profile(
            level=view.level,
            total_points=total,
            experience_points=view.experience_points,
            next_level_points=view.next_level_points,
            study_streak=streak.current,
            longest_streak=streak.longest,
            badges_earned=int(state["badges_earned"] or 0),
            rank=rank,
            streak_freezes=streak.freezes,
            challenges_completed=int(state["challenges_completed"] or 0),
            league=league,
        )

    async def league(self, user: uuid.UUID) -> LeagueStandings:
        week = week_key(dt.datetime.now(dt.UTC))
        membership = await game_db.league_of(self.db.pool, week, user)
        if membership is None:
            return LeagueStandings(week, None, None, None, [])
        rows = await game_db.league_standings(
            self.db.pool, week, membership["tier"], membership["league"]
        )
        return LeagueStandings(
            week,
            membership["tier"],
            _tier_name(membership["tier"]),
            membership["league"],
            [
                LeagueMember(i + 1, str(r["user_id"]), r["username"], int(r["points"]),
                             r["user_id"] == user)
                for i, r in enumerate(rows)
            ],
        )  # fmt: skip

    async def leaderboard(self, principal: Principal, query: LeaderboardQuery) -> Leaderboard:
        timeframe = validate(query)
        metric = {"points": "points", "study-time": "study", "streak": "streak"}[query.metric]
        now = dt.datetime.now(dt.UTC)
        period = period_of("all-time" if metric == "streak" else timeframe, now)
        me = principal.user_id
        ranked: Ranked
        if query.type == "pod":
            if query.pod_id is None:  # (validate() requires it)
                raise NotFound("pod not found")
            await self.pods.visible_pod(principal, query.pod_id)
            if metric == "streak":
                members = await game_db.pod_member_ids(self.db.pool, query.pod_id, 1000)
                ranked = await self.boards.subset(
                    metric, period.key, period.ends_at, members, me, query.limit
                )
            else:
                ranked = await self.boards.ranked(
                    metric, str(query.pod_id), period.key, period.ends_at, me, query.limit
                )
        elif query.type == "friends":
            friends = await game_db.mutual_follows(self.db.pool, me, 999)
            ranked = await self.boards.subset(
                metric, period.key, period.ends_at, [me, *friends], me, query.limit
            )
        else:
            ranked = await self.boards.ranked(
                metric, "global", period.key, period.ends_at, me, query.limit
            )
        ids = {uuid.UUID(m) for m, _ in ranked.top} | {
            uuid.UUID(m) for _, m, _ in ranked.neighbours
        }
        cards = await game_db.user_cards(self.db.pool, list(ids))

        def entry(rank: int, member: str, score: float) -> LeaderboardEntry:
            card = cards.get(uuid.UUID(member))
            return LeaderboardEntry(
                rank=rank + 1,
                user_id=member,
                username=card["username"] if card else None,
                first_name=card["first_name"] if card else None,
                last_name=card["last_name"] if card else None,
                avatar_url=card["avatar_url"] if card else None,
                score=int(score),
                is_me=member == str(me),
            )

        mine = None
        if ranked.rank is not None and ranked.score is not None:
            mine = entry(ranked.rank, str(me), ranked.score)
        return Leaderboard(
            type=query.type,
            timeframe="all-time" if metric == "streak" else timeframe,
            metric=query.metric,
            period=period.key,
            pod_id=str(query.pod_id) if query.pod_id else None,
            total=ranked.size,
            entries=[entry(i, m, s) for i, (m, s) in enumerate(ranked.top)],
            me=mine,
            neighbours=[entry(r, m, s) for r, m, s in ranked.neighbours],
            source=ranked.source,
        )

    # ------------------------------------------------------------------ jobs

    async def run(self, job: Job) -> None:
        """`gamification_catch_up` (see `catch_up`)."""
        await self.catch_up()

    async def catch_up(self) -> int:
        """`gamification_catch_up`: apply the events no listener applied (in id order from the
        cursor) and end the challenges whose time is up.

        The cursor is kept only below events old enough to have surely committed (SETTLE); a
        run reads on past younger ones, whatever their number, leaving those the listener may
        still be applying (LISTENER_GRACE) to the next run."""
        applied = 0
        kinds = sorted(POINTS)
        deadline = time.monotonic() + CATCH_UP_BUDGET
        start = await game_db.cursor(self.db.pool, CURSOR)
        scanned = new_cursor = start
        advancing = True
        for _ in range(CATCH_UP_ROUNDS):
            rows = await game_db.unapplied_events(self.db.pool, scanned, kinds, CATCH_UP_BATCH)
            now = dt.datetime.now(dt.UTC)
            settled_before, heard_by_now = now - SETTLE, now - LISTENER_GRACE
            finished = len(rows) < CATCH_UP_BATCH
            for row in rows:
                if time.monotonic() > deadline:
                    finished = True
                    break  # (the cursor stays before this row: the next run goes on here)
                scanned = row["id"]
                if row["created_at"] > heard_by_now:
                    # the listener is on it: applying it here could take a user's events out
                    # of order (a streak counts days in order); the next run looks again
                    advancing = False
                    continue
                if not row["applied"] and await self.apply(event_of(row)):
                    applied += 1
                if advancing and row["created_at"] < settled_before:
                    new_cursor = row["id"]
                else:
                    advancing = False  # newer events may still be joined by older ids
            if finished:
                break
        if new_cursor != start:
            await game_db.set_cursor(self.db.pool, CURSOR, new_cursor)
        async with self.db.transaction() as conn:
            await game_db.end_challenges(conn)
        if applied:
            log.info("gamification caught up", extra={"events": applied})
        return applied

    async def sweep(self, job: Job) -> None:
        """`streak_sweep` (hourly): see `sweep_streaks`."""
        changed = await self.sweep_streaks()
        if changed:
            log.info("streaks settled", extra={"users": changed})

    async def sweep_streaks(self, now: dt.datetime | None = None) -> int:
        """Spend freezes on missed days and end lapsed streaks, each user on their own day
        (whoever has a streak and no study day since yesterday in UTC, a page at a time)."""
        now = now or dt.datetime.now(dt.UTC)
        changed = 0
        after: uuid.UUID | None = None
        while True:
            rows = await game_db.lapsed_streaks(self.db.pool, now.date(), after, SWEEP_BATCH)
            for row in rows:
                if await self._settle_streak(row["user_id"], now):
                    changed += 1
            if len(rows) < SWEEP_BATCH:
                return changed
            after = rows[-1]["user_id"]

    async def _settle_streak(self, user: uuid.UUID, now: dt.datetime) -> bool:
        writes: list[ScoreWrite] = []
        async with self.db.transaction() as conn:
            state = await game_db.lock_state(conn, user)
            if state is None:
                return False
            before = _streak(state)
            after = streak_today(before, local_day(now, state["timezone"]))
            if after == before:
                return False
            await game_db.save_state(
                conn,
                user,
                total_points=int(state["total_points"] or 0),
                level=int(state["level"] or 1),
                experience_points=int(state["experience_points"] or 0),
                study_streak=after.current,
                longest_streak=after.longest,
                last_study_date=after.last_day,
                streak_freezes=after.freezes,
            )
            writes = writes_for(user, [], after.current, now)
        await self.boards.write(writes)
        return True


def _streak(state: asyncpg.Record) -> Streak:
    return Streak(
        int(state["study_streak"] or 0),
        int(state["longest_streak"] or 0),
        state["last_study_date"],
        int(state["streak_freezes"] or 0),
    )


def _tier_name(tier: int) -> str:
    return LEAGUE_TIERS[max(0, min(tier, len(LEAGUE_TIERS) - 1))]


def event_of(row: asyncpg.Record) -> AnalyticsEvent:
    """An `analytics_events` row as the listener would have heard it."""
    return AnalyticsEvent(
        id=row["id"],
        user_id=row["user_id"],
        kind=Kind(row["event"]),
        occurred_at=row["occurred_at"],
        local_date=row["local_date"],
        local_hour=row["local_hour"],
        pod_id=row["pod_id"],
        session_id=row["session_id"],
        value=row["value"],
        meta={},
        dedupe_key=row["dedupe_key"],
    )


GAMIFICATION = web.AppKey("gamification", Gamification)
