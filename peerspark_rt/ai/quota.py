"""Daily token quotas: checked and reserved before an AI call, settled with what it really cost.

A day is a UTC day, for everyone: a quota that resets at one instant is simple to explain and to
check, and cannot be stretched by changing one's time zone in the middle of a day. Usage lives in
`ai_usage_daily`, not in the conversations, so deleting a conversation gives nothing back.

Before a call the estimate of its prompt plus the longest answer allowed is reserved in one
conditional UPDATE, so concurrent calls cannot overspend together; the answer's length is capped
at what is left. Afterwards the reservation is replaced by the tokens the upstream reported, or
given back when the call failed (the user does not pay for our upstream's failures).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass

from ..accounts.auth import Principal
from ..config import Settings
from ..errors import RateLimited
from ..infra.dbtypes import Executor
from ..infra.pool import Database
from . import db as ai_db

# Below this many tokens left for the answer a call is not worth making.
MIN_ANSWER_TOKENS = 32


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def seconds_to_reset(now: dt.datetime) -> int:
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    return max(1, math.ceil((midnight - now).total_seconds()))


@dataclass(frozen=True, slots=True)
class QuotaState:
    limit: int
    used: int
    reset_in: int  # seconds until the next UTC midnight

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self) -> dict[str, str]:
        return {
            "X-AI-Tokens-Limit": str(self.limit),
            "X-AI-Tokens-Remaining": str(self.remaining),
            "X-AI-Tokens-Reset": str(self.reset_in),
        }


@dataclass(slots=True)
class Reservation:
    user_id: uuid.UUID
    day: dt.date
    amount: int
    limit: int
    max_answer: int  # the answer's token cap, within what is left
    settled: bool = False


class QuotaService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def limit_for(self, principal: Principal) -> int:
        if principal.is_premium and self.settings.enable_premium_features:
            return self.settings.ai_daily_tokens_premium
        return self.settings.ai_daily_tokens

    async def state(self, principal: Principal) -> QuotaState:
        now = _now()
        used = await ai_db.tokens_on(self.db.pool, principal.user_id, now.date())
        return QuotaState(self.limit_for(principal), used, seconds_to_reset(now))

    def _spent(self, state: QuotaState, message: str) -> RateLimited:
        error = RateLimited(message, retry_after=state.reset_in)
        error.code = "ai_quota_exceeded"
        error.headers.update(state.headers())
        return error

    async def reserve(
        self, principal: Principal, prompt_tokens: int, max_answer: int
    ) -> tuple[Reservation, QuotaState]:
        """Reserve the prompt's estimate and an answer of up to `max_answer` tokens (less when
        less is left). 429 with Retry-After (seconds to midnight UTC) when it does not fit."""
        now = _now()
        limit = self.limit_for(principal)
        used = await ai_db.tokens_on(self.db.pool, principal.user_id, now.date())
        state = QuotaState(limit, used, seconds_to_reset(now))
        left = limit - used
        if left <= 0:
            raise self._spent(
                state,
                f"your daily AI allowance of {limit} tokens is used up; it renews at midnight UTC",
            )
        answer = min(max_answer, left - prompt_tokens)
        if answer < MIN_ANSWER_TOKENS:
            raise self._spent(
                state,
                f"this question needs about {prompt_tokens + MIN_ANSWER_TOKENS} tokens and only "
                f"{left} of your daily {limit} are left; ask something shorter, start a new "
                "conversation, or wait until midnight UTC",
            )
        amount = prompt_tokens + answer
        total = await ai_db.reserve_tokens(
            self.db.pool, principal.user_id, now.date(), amount, limit
        )
        if total is None:  # another call took what was left in the meantime
            state = await self.state(principal)
            raise self._spent(
                state, "your daily AI allowance is used up by your other questions; try later"
            )
        reservation = Reservation(principal.user_id, now.date(), amount, limit, answer)
        return reservation, QuotaState(limit, total, seconds_to_reset(now))

    async def settle(
        self, reservation: Reservation, used: int, db: Executor | None = None
    ) -> QuotaState:
        """Charge what the call really used in place of the reservation (once)."""
        if reservation.settled:
            raise RuntimeError("reservation settled twice")
        reservation.settled = True
        total = await ai_db.settle_tokens(
            db or self.db.pool,
            reservation.user_id,
            reservation.day,
            reservation.amount,
            used,
            query=True,
        )
        return QuotaState(reservation.limit, total, seconds_to_reset(_now()))

    async def release(self, reservation: Reservation) -> None:
        """Give a reservation back (the call failed); harmless after `settle`."""
        if reservation.settled:
            return
        reservation.settled = True
        await ai_db.settle_tokens(
            self.db.pool, reservation.user_id, reservation.day, reservation.amount, 0, query=False
        )
