"""Domain errors. Services raise these; HTTP maps them in one middleware and the websocket
handler maps them to error frames in one place."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        # extra response headers (e.g. the AI quota left on a 429)
        self.headers: dict[str, str] = {}
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class BadRequest(AppError):
    status = 400
    code = "bad_request"


class Invalid(AppError):
    """Input that parsed but breaks a rule. Always names the field."""

    status = 422
    code = "validation_error"

    def __init__(self, field: str, reason: str, *, code: str | None = None) -> None:
        super().__init__(
            f"{field}: {reason}", details=[{"field": field, "reason": reason}], code=code
        )
        self.field = field
        self.reason = reason


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class RequestTimeout(AppError):
    status = 408
    code = "request_timeout"


class Conflict(AppError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(AppError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = max(1, int(retry_after))


class HeldForReview(AppError):
    """Content that moderation held back: nothing was published, a reviewer will decide.
    The body names the field and carries the held item (id, reason, rule, categories)."""

    status = 422
    code = "held_for_review"

    def __init__(self, message: str, *, field: str, held: dict[str, Any]) -> None:
        super().__init__(message, details=[{"field": field, "reason": held["reason"]}])
        self.held = held

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["held"] = self.held
        return body


class Unavailable(AppError):
    status = 503
    code = "unavailable"


class UpstreamError(AppError):
    status = 502
    code = "upstream_error"


class UpstreamTimeout(AppError):
    status = 504
    code = "upstream_timeout"
