"""Token arithmetic without a tokenizer: estimates, and trimming history to a budget.

No tokenizer is bundled (the common ones download their vocabularies at run time), so tokens
are estimated from characters: about four characters per token for English, plus a few tokens of
framing per message, which is what OpenAI documents as a rule of thumb. The estimate only decides
what to send and what to reserve from the quota; what is charged is what the upstream reports.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..infra.ai_client import ChatMessage

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4  # role and separators
TOKENS_PER_REQUEST = 3  # the assistant's reply is primed with a few tokens


def estimate_text(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_message(message: ChatMessage) -> int:
    return estimate_text(message.content) + TOKENS_PER_MESSAGE


def estimate_prompt(messages: Sequence[ChatMessage]) -> int:
    return sum(estimate_message(m) for m in messages) + TOKENS_PER_REQUEST


def trim_history(
    system: Sequence[ChatMessage],
    history: Sequence[ChatMessage],
    question: ChatMessage,
    budget: int,
) -> list[ChatMessage]:
    """The messages to send: every system message, then as much of `history` (oldest first) as
    fits in `budget` tokens, then the question. The oldest messages go first; the system prompt
    and the question are always kept, whatever the budget. An answer whose question was trimmed
    away is dropped too, so the kept history never starts in the middle of an exchange."""
    kept: list[ChatMessage] = []
    used = 0
    for message in reversed(history):
        cost = estimate_message(message)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    # Never start the history with an assistant message whose question was trimmed away.
    while kept and kept[0].role == "assistant":
        kept.pop(0)
    return [*system, *kept, question]
