"""Pure logic behind the assistant and moderation: history trimming, token estimates, the
Socratic tutor's "give me the solution" detection, citations, and the local moderation rules."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from peerspark_rt.ai import budget, prompts
from peerspark_rt.ai.quota import seconds_to_reset
from peerspark_rt.errors import Invalid
from peerspark_rt.infra import cursor
from peerspark_rt.infra.ai_client import ChatMessage
from peerspark_rt.moderation.rules import (
    RepeatTracker,
    blocked_words_pattern,
    count_links,
    find_blocked,
    fingerprint,
)


def m(role: str, n: int, tag: str = "") -> ChatMessage:
    return ChatMessage(role, tag + "x" * (n * 4 - len(tag)))  # type: ignore[arg-type]


def test_estimates_round_up_and_count_framing() -> None:
    assert budget.estimate_text("") == 0
    assert budget.estimate_text("abcd") == 1
    assert budget.estimate_text("abcde") == 2
    assert budget.estimate_message(m("user", 10)) == 14
    assert budget.estimate_prompt([m("system", 10), m("user", 5)]) == 14 + 9 + 3


def test_trimming_drops_the_oldest_and_keeps_system_and_question() -> None:
    system = [m("system", 500)]
    history = [m("user", 10, "q1"), m("assistant", 10, "a1"), m("user", 10, "q2"),
               m("assistant", 10, "a2")]  # fmt: skip
    question = m("user", 10, "q3")
    assert budget.trim_history(system, history, question, 1000) == [*system, *history, question]
    kept = budget.trim_history(system, history, question, 28)  # room for two messages
    assert [x.content[:2] for x in kept] == ["xx", "q2", "a2", "q3"]
    # an answer whose question was cut is dropped too
    kept = budget.trim_history(system, history, question, 14)
    assert [x.content[:2] for x in kept] == ["xx", "q3"]
    # whatever the budget, the system prompt and the question stay
    assert budget.trim_history(system, history, question, 0) == [*system, question]


@pytest.mark.parametrize(
    ("text", "wants"),
    [
        ("Just show me the full solution", True),
        ("can you give me the answer?", True),
        ("What is the final answer", True),
        ("I give up", True),
        ("show me the worked solution please", True),
        ("I think x = 4, is that right?", False),
        ("How should I start?", False),
        ("What is the answer to life? no wait, give me a hint", True),
        ("The solution set confuses me", False),
    ],
)
def test_asking_for_the_solution(text: str, wants: bool) -> None:
    assert prompts.wants_solution(text) is wants


def test_system_prompts_and_citations() -> None:
    sources = [prompts.Source(1, "r1", "Notes", "passage one"),
               prompts.Source(2, "r2", "Book", "passage two")]  # fmt: skip
    text = prompts.system_prompt("doubt_solving", subject="Physics", socratic=True, sources=sources)
    assert "Socratic tutor" in text
    assert "The subject is Physics." in text
    assert "[1] Notes (resource r1):\npassage one" in text
    assert "complete worked solution" in prompts.system_prompt("doubt_solving")
    assert "Socratic" not in prompts.system_prompt("general", socratic=True)
    assert prompts.cited_labels("see [2], and [2] again, not [7]", sources) == [2]


def test_quota_resets_at_the_next_utc_midnight() -> None:
    now = dt.datetime(2026, 3, 1, 23, 59, 30, tzinfo=dt.UTC)
    assert seconds_to_reset(now) == 30
    assert seconds_to_reset(dt.datetime(2026, 3, 1, tzinfo=dt.UTC)) == 86400


def test_cursors_round_trip_and_refuse_garbage() -> None:
    at, ident = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), uuid.uuid4()
    types = (dt.datetime, uuid.UUID)
    made = cursor.encode("ai_conversations", (at, ident))
    assert cursor.decode(made, "ai_conversations", types) == (at, ident)
    with pytest.raises(Invalid):  # a cursor of another listing
        cursor.decode(made, "moderation_held", types)
    for bad in ("", "abc", "bm90IGEgY3Vyc29y"):
        with pytest.raises(Invalid):
            cursor.decode(bad, "ai_conversations", types)


def test_blocked_words_match_whole_words_in_any_case() -> None:
    pattern = blocked_words_pattern(["casino", "free money", "c++"])
    assert find_blocked("Visit the CASINO", pattern) == "casino"
    assert find_blocked("free\n money inside", pattern) == "free money"
    assert find_blocked("casinos are fine, occasional too", pattern) is None
    assert find_blocked("I love c++!", pattern) == "c++"
    assert find_blocked("anything", blocked_words_pattern([])) is None


def test_links_are_counted() -> None:
    assert count_links("see https://a.example/x, www.b.example and http://c.example") == 3
    assert count_links("no links, just a.b") == 0


def test_repeats_are_counted_per_author_within_the_window() -> None:
    tracker = RepeatTracker(window=60, max_authors=2, per_author=3)
    digest = fingerprint("Hello,   WORLD!")
    assert digest == fingerprint("hello world")
    tracker.record("ann", "message", digest, "c1", now=0)
    tracker.record("ann", "message", digest, "c1", now=1)  # a resend is not counted again
    tracker.record("ann", "message", digest, None, now=2)
    assert tracker.repeats("ann", "message", digest, None, now=3) == 2
    assert tracker.repeats("ann", "message", digest, "c1", now=3) == 1
    assert tracker.repeats("ann", "message", digest, None, now=61.5) == 1  # the first expired
    assert tracker.repeats("bob", "message", digest, None, now=3) == 0
    tracker.record("bob", "message", digest, None, now=4)
    tracker.record("cy", "message", digest, None, now=5)  # ann is the least recent: dropped
    assert tracker.repeats("ann", "message", digest, None, now=6) == 0
