"""What moderation costs on the chat hot path with AI off (local rules only).

    .venv/bin/python -m bench.moderation_rules [messages]

Prints microseconds per `ModerationService.review` of a chat message: blocked words, link count,
the repeat tracker and the verdict metrics, no I/O (the database is only consulted for posts and
comments, and the OpenAI endpoint only when AI is configured).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

from peerspark_rt.accounts.auth import Principal
from peerspark_rt.config import Settings
from peerspark_rt.infra.ai_client import AIClient
from peerspark_rt.moderation.service import ModerationContext, ModerationService


async def run(messages: int) -> float:
    settings = Settings(moderation_blocked_words=("viagra", "cialis", "casino", "porn"))
    unused: Any = None  # no database, pods or notifications are touched for chat messages
    service = ModerationService(unused, settings, AIClient(settings), unused, unused)
    authors = [
        Principal(uuid.uuid4(), uuid.uuid4(), f"user{i}", f"u{i}@x.org", "user", False)
        for i in range(200)
    ]
    context = ModerationContext(session_id=uuid.uuid4())
    started = time.perf_counter()
    for i in range(messages):
        verdict = await service.review(
            authors[i % len(authors)],
            "message",
            f"Shall we do problem {i} of chapter 3 next? Notes: https://notes.example/{i}",
            context,
            dedupe_key=str(i),
        )
        assert verdict.allowed
    return (time.perf_counter() - started) / messages


def main() -> None:
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    per_message = asyncio.run(run(messages))
    print(f"moderation (local rules) of {messages} chat messages: {per_message * 1e6:.1f} us each")


if __name__ == "__main__":
    main()
