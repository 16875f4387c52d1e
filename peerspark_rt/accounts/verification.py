"""Which features need a verified email address (REQUIRE_VERIFIED_EMAIL): the ones that invite
abuse from throwaway accounts. Unverified accounts use everything else."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import Forbidden
from .auth import Principal

# feature -> what the refusal says the caller tried
FEATURES = {
    "report": "report content",
    "invite_email": "invite people by email",
    "public_pod": "create a public pod",
}


class EmailGate:
    def __init__(self, required: Iterable[str] = ()) -> None:
        unknown = set(required) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown features: {sorted(unknown)}")
        self.required = frozenset(required)

    def check(self, principal: Principal, feature: str) -> None:
        """Raise 403 email_unverified when `feature` needs a verified address the caller has
        not verified."""
        if feature in self.required and not principal.email_verified:
            raise Forbidden(
                f"verify your email address to {FEATURES[feature]} "
                "(POST /api/auth/verify-email/resend sends the link again)",
                code="email_unverified",
            )
