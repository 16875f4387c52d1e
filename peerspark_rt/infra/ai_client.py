"""The one place that talks to the OpenAI-compatible API (through the official `openai` SDK).

Everything upstream turns into the product's errors here: a missing key or a disabled feature is
503 `ai_not_configured` / `ai_disabled`, a failing upstream is 502 `upstream_error`, a slow one
504 `upstream_timeout`, each with a message a user can act on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import openai
from aiohttp import web
from openai.types.chat import ChatCompletionMessageParam

from ..config import Settings
from ..errors import AppError, Unavailable, UpstreamError, UpstreamTimeout

log = logging.getLogger(__name__)

Role = Literal["system", "user", "assistant"]
HEALTH_CACHE_SECONDS = 30.0
HEALTH_TIMEOUT = 2.5


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool = False  # the upstream reported nothing; counted from the text instead


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage | None
    finish_reason: str
    upstream_id: str


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of a streamed answer."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The stream finished properly (the upstream said why it stopped)."""

    finish_reason: str
    usage: Usage | None
    upstream_id: str


@dataclass(frozen=True, slots=True)
class ModerationResult:
    flagged: bool
    categories: tuple[str, ...] = field(default=())


def _params(messages: Sequence[ChatMessage]) -> list[ChatCompletionMessageParam]:
    out: list[ChatCompletionMessageParam] = []
    for m in messages:
        if m.role == "system":
            out.append({"role": "system", "content": m.content})
        elif m.role == "user":
            out.append({"role": "user", "content": m.content})
        else:
            out.append({"role": "assistant", "content": m.content})
    return out


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    return Usage(int(raw.prompt_tokens), int(raw.completion_tokens), int(raw.total_tokens))


def upstream_error(exc: Exception) -> AppError:
    """The product's error for an SDK failure (timeouts first: they are connection errors too)."""
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamTimeout("the AI service did not answer in time; try again in a moment")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamError("the AI service could not be reached; try again in a moment")
    if isinstance(exc, openai.RateLimitError):
        return UpstreamError(
            "the AI service is overloaded (it rate-limited us); try again in a moment",
            code="upstream_rate_limited",
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return UpstreamError(
            "the AI service refused the server's credentials; tell an administrator",
            code="upstream_auth_failed",
        )
    if isinstance(exc, openai.APIStatusError):
        return UpstreamError(f"the AI service failed (HTTP {exc.status_code}); try again later")
    if isinstance(exc, openai.APIError):
        return UpstreamError(f"the AI service failed: {exc.message}")
    return UpstreamError("the AI service failed unexpectedly")


class AIClient:
    """Owns the AsyncOpenAI instance (one connection pool per node). Build it with `open`, close
    it with `close`. When AI is disabled or has no key there is no SDK client at all, and every
    call raises 503 saying why."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = settings.openai_model
        self._sdk: openai.AsyncOpenAI | None = None
        self._moderation_sdk: openai.AsyncOpenAI | None = None
        self._health: tuple[float, dict[str, Any]] | None = None
        if settings.enable_ai_features and settings.openai_api_key:
            self._sdk = openai.AsyncOpenAI(
                api_key=settings.openai_api_key,
                base_url=settings.openai_base_url,
                organization=settings.openai_org_id,
                timeout=openai.Timeout(
                    settings.openai_timeout, connect=min(10.0, settings.openai_timeout)
                ),
                max_retries=settings.openai_max_retries,
            )
            # Moderation sits on the chat hot path: short timeout, no retries.
            self._moderation_sdk = self._sdk.with_options(
                timeout=settings.moderation_timeout, max_retries=0
            )

    @property
    def state(self) -> str:
        if not self.settings.enable_ai_features:
            return "disabled"
        return "configured" if self._sdk is not None else "not_configured"

    @property
    def available(self) -> bool:
        return self._sdk is not None

    def require(self) -> openai.AsyncOpenAI:
        """The SDK client, or 503 saying why there is none."""
        if self._sdk is not None:
            return self._sdk
        if not self.settings.enable_ai_features:
            raise Unavailable(
                "AI features are turned off on this server (ENABLE_AI_FEATURES=false)",
                code="ai_disabled",
            )
        raise Unavailable(
            "AI is not configured on this server: an administrator must set OPENAI_API_KEY",
            code="ai_not_configured",
        )

    async def close(self) -> None:
        if self._sdk is not None:
            await self._sdk.close()

    # --- chat -----------------------------------------------------------------------------

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> Completion:
        sdk = self.require()
        try:
            result = await sdk.chat.completions.create(
                model=self.model,
                messages=_params(messages),
                max_tokens=max_tokens,
                temperature=temperature,
            )
        except openai.OpenAIError as exc:
            log.warning("AI completion failed: %s", exc)
            raise upstream_error(exc) from None
        if not result.choices:
            raise UpstreamError("the AI service sent an empty answer; try again")
        choice = result.choices[0]
        text = choice.message.content or ""
        if not text.strip():
            raise UpstreamError("the AI service sent an empty answer; try again")
        return Completion(text, _usage(result.usage), choice.finish_reason or "stop", result.id)

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[Delta | StreamEnd]:
        """Yield the answer's pieces, then one `StreamEnd`. A stream that breaks off, reports an
        error, or ends without saying why it stopped raises 502/504: it is not an answer."""
        sdk = self.require()
        finish: str | None = None
        usage: Usage | None = None
        upstream_id = ""
        try:
            chunks = await sdk.chat.completions.create(
                model=self.model,
                messages=_params(messages),
                max_tokens=max_tokens,
                temperature=temperature,
                stream=True,
                stream_options={"include_usage": True},
            )
            async with chunks:
                async for chunk in chunks:
                    upstream_id = upstream_id or chunk.id
                    if chunk.usage is not None:
                        usage = _usage(chunk.usage)
                    for choice in chunk.choices[:1]:
                        if choice.delta.content:
                            yield Delta(choice.delta.content)
                        if choice.finish_reason:
                            finish = choice.finish_reason
        except openai.OpenAIError as exc:
            log.warning("AI stream failed: %s", exc)
            raise upstream_error(exc) from None
        if finish is None:
            raise UpstreamError("the AI service stopped in the middle of its answer; try again")
        yield StreamEnd(finish, usage, upstream_id)

    # --- moderation -----------------------------------------------------------------------

    async def moderate(self, text: str) -> ModerationResult:
        """Ask the moderation endpoint. Raises AppError when it fails (callers fall back)."""
        if self._moderation_sdk is None:
            raise Unavailable("AI moderation is not configured", code="ai_not_configured")
        try:
            result = await self._moderation_sdk.moderations.create(input=text)
        except openai.OpenAIError as exc:
            raise upstream_error(exc) from None
        if not result.results:
            raise UpstreamError("the moderation service sent no result")
        first = result.results[0]
        flags = first.categories.model_dump(by_alias=True)
        return ModerationResult(
            bool(first.flagged), tuple(sorted(k for k, v in flags.items() if v is True))
        )

    # --- health ---------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """What /health shows: disabled, not configured, or configured and reachable (the
        model is looked up upstream, at most every 30 seconds)."""
        if self._sdk is None:
            if self.state == "disabled":
                return {"status": "disabled", "reason": "ENABLE_AI_FEATURES is false"}
            return {
                "status": "not_configured",
                "reason": "AI is not configured: set OPENAI_API_KEY",
            }
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < HEALTH_CACHE_SECONDS:
            return dict(self._health[1])
        details: dict[str, Any] = {"model": self.model, "baseUrl": self.settings.openai_base_url}
        try:
            await self._sdk.with_options(timeout=HEALTH_TIMEOUT, max_retries=0).models.retrieve(
                self.model
            )
        except openai.NotFoundError:
            details.update(status="unhealthy", error=f"the AI service has no model {self.model!r}")
        except openai.OpenAIError as exc:
            details.update(status="unhealthy", error=upstream_error(exc).message)
        else:
            details.update(status="healthy", reachable=True)
        self._health = (now, details)
        return dict(details)


# the application's key for what this module provides (typed app state)
AI = web.AppKey("ai", AIClient)
