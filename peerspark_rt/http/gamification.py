"""/api/gamification, /api/achievements, /api/challenges, /api/leaderboard and follows."""

from __future__ import annotations

from aiohttp import web

from ..gamification.challenges import (
    CHALLENGES,
    ChallengeCreate,
    ChallengeDetail,
    ChallengeList,
    ChallengeQuery,
    ChallengeView,
)
from ..gamification.engine import (
    GAMIFICATION,
    AchievementList,
    AchievementView,
    ClaimResult,
    LeagueStandings,
    Profile,
)
from ..gamification.follows import FOLLOWS, FollowPage, FollowQuery, FollowState
from ..gamification.leaderboard import Leaderboard, LeaderboardQuery
from .contract import operation, signed_in
from .middleware import principal
from .render import path_id

routes = web.RouteTableDef()

# the reference challenge lives in the private pod: its members see it, nobody else does
POD_ONLY = signed_in(200, outsider=404, banned=404, admin=404)


@routes.get("/api/gamification/profile")
@operation(tag="gamification", access=signed_in(200))
async def profile(request: web.Request) -> Profile:
    """Your level, points, streak, badges, rank and league."""
    return await request.app[GAMIFICATION].profile(principal(request).user_id)


@routes.get("/api/gamification/league")
@operation(tag="gamification", access=signed_in(200))
async def league(request: web.Request) -> LeagueStandings:
    """Your league this week, ranked by the week's points (empty before your first points)."""
    return await request.app[GAMIFICATION].league(principal(request).user_id)


@routes.get("/api/leaderboard")
@operation(tag="gamification", errors=(404,), access=signed_in(200))
async def leaderboard(request: web.Request, query: LeaderboardQuery) -> Leaderboard:
    """A leaderboard (global, a pod's, or your friends'), with your rank and neighbours."""
    return await request.app[GAMIFICATION].leaderboard(principal(request), query)


@routes.get("/api/achievements")
@operation(tag="gamification", access=signed_in(200))
async def achievements(request: web.Request) -> AchievementList:
    """Every achievement with your progress towards it."""
    return await request.app[GAMIFICATION].achievements(principal(request).user_id)


@routes.get("/api/achievements/{achievementId}")
@operation(tag="gamification", access=signed_in(200))
async def achievement(request: web.Request) -> AchievementView:
    """One achievement with your progress."""
    achievement_id = path_id(request, "achievementId", "achievement")
    return await request.app[GAMIFICATION].achievement(principal(request).user_id, achievement_id)


@routes.post("/api/achievements/{achievementId}/claim")
@operation(tag="gamification", errors=(409,), access=signed_in(409))
async def claim(request: web.Request) -> ClaimResult:
    """Claim an unlocked achievement's points (once; 409 before it is unlocked)."""
    achievement_id = path_id(request, "achievementId", "achievement")
    return await request.app[GAMIFICATION].claim(principal(request).user_id, achievement_id)


@routes.get("/api/challenges")
@operation(tag="gamification", access=signed_in(200))
async def list_challenges(request: web.Request, query: ChallengeQuery) -> ChallengeList:
    """Challenges you can take part in (global ones and your pods'), with your progress."""
    return await request.app[CHALLENGES].list(principal(request), query)


@routes.post("/api/challenges")
@operation(
    tag="gamification",
    status=201,
    errors=(403, 404),
    access=signed_in(403, outsider=404, banned=404, owner=201, admin=404),
)
async def create_challenge(request: web.Request, body: ChallengeCreate) -> ChallengeView:
    """Create a challenge: global (platform admins) or for a pod (its admins)."""
    return await request.app[CHALLENGES].create(principal(request), body)


@routes.get("/api/challenges/{challengeId}")
@operation(tag="gamification", access=POD_ONLY)
async def get_challenge(request: web.Request) -> ChallengeDetail:
    """One challenge, your progress and the standings."""
    challenge_id = path_id(request, "challengeId", "challenge")
    return await request.app[CHALLENGES].get(principal(request), challenge_id)


@routes.post("/api/challenges/{challengeId}/join")
@operation(tag="gamification", errors=(403, 409), access=POD_ONLY)
async def join_challenge(request: web.Request) -> ChallengeView:
    """Take part in a challenge (again, after leaving it)."""
    challenge_id = path_id(request, "challengeId", "challenge")
    return await request.app[CHALLENGES].join(principal(request), challenge_id)


@routes.delete("/api/challenges/{challengeId}/leave")
@operation(tag="gamification", errors=(409,), access=signed_in(404))
async def leave_challenge(request: web.Request) -> None:
    """Stop taking part (404 when you were not; 409 once completed)."""
    challenge_id = path_id(request, "challengeId", "challenge")
    await request.app[CHALLENGES].leave(principal(request), challenge_id)


@routes.post("/api/users/{userId}/follow")
@operation(tag="gamification", errors=(422,), access=signed_in(200, member=422))
async def follow(request: web.Request) -> FollowState:
    """Follow a user (idempotent); following each other makes you friends."""
    user_id = path_id(request, "userId", "user")
    return await request.app[FOLLOWS].follow(principal(request), user_id, on=True)


@routes.delete("/api/users/{userId}/follow")
@operation(tag="gamification", errors=(422,), access=signed_in(200, member=422))
async def unfollow(request: web.Request) -> FollowState:
    """Stop following a user (idempotent)."""
    user_id = path_id(request, "userId", "user")
    return await request.app[FOLLOWS].follow(principal(request), user_id, on=False)


@routes.get("/api/users/{userId}/followers")
@operation(tag="gamification", access=signed_in(200))
async def followers(request: web.Request, query: FollowQuery) -> FollowPage:
    """Who follows a user, newest first."""
    user_id = path_id(request, "userId", "user")
    return await request.app[FOLLOWS].page(user_id, query, followers=True)


@routes.get("/api/users/{userId}/following")
@operation(tag="gamification", access=signed_in(200))
async def following(request: web.Request, query: FollowQuery) -> FollowPage:
    """Whom a user follows, newest first."""
    user_id = path_id(request, "userId", "user")
    return await request.app[FOLLOWS].page(user_id, query, followers=False)
