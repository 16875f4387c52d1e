"""The local moderation rules: fast checks that run on the chat hot path with no I/O (blocked
words, link spam, a message repeated again and again)."""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

_URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"']+")


def blocked_words_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    """One regex for every blocked word or phrase, matching whole words, any case."""
    parts = [r"\s+".join(re.escape(piece) for piece in w.split()) for w in words if w.strip()]
    if not parts:
        return None
    parts.sort(key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


def find_blocked(text: str, pattern: re.Pattern[str] | None) -> str | None:
    if pattern is None:
        return None
    found = pattern.search(text)
    return " ".join(found.group(0).lower().split()) if found else None


def count_links(text: str) -> int:
    return len(_URL.findall(text))


def fingerprint(text: str) -> bytes:
    """The same for texts that differ only in case, spacing and punctuation."""
    normalized = " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
    return hashlib.blake2b(normalized.encode(), digest_size=12).digest()


def meaningful_length(text: str) -> int:
    return len(re.sub(r"[\W_]", "", text))


@dataclass(slots=True)
class _Sent:
    at: float
    digest: bytes
    dedupe_key: str | None


class RepeatTracker:
    """What each author sent recently on this node, to catch the same text sent again and again.

    In memory and per node: chat goes through one node per user (sticky balancing), and the
    check must cost nothing on the hot path. Bounded: at most `max_authors` authors (least
    recently active dropped first) with their last `per_author` texts each.
    """

    def __init__(
        self, *, window: float = 600.0, max_authors: int = 10_000, per_author: int = 20
    ) -> None:
        self.window = window
        self.max_authors = max_authors
        self.per_author = per_author
        self._recent: OrderedDict[tuple[str, str], deque[_Sent]] = OrderedDict()

    def repeats(
        self,
        author: str,
        kind: str,
        digest: bytes,
        dedupe_key: str | None,
        now: float | None = None,
    ) -> int:
        """How often the author sent this text within the window (a resend of the same
        client id is the same message, not a repeat)."""
        now = time.monotonic() if now is None else now
        sent = self._recent.get((author, kind))
        if not sent:
            return 0
        return sum(
            1
            for s in sent
            if s.digest == digest
            and now - s.at <= self.window
            and (dedupe_key is None or s.dedupe_key != dedupe_key)
        )

    def record(
        self,
        author: str,
        kind: str,
        digest: bytes,
        dedupe_key: str | None,
        now: float | None = None,
    ) -> None:
        now = time.monotonic() if now is None else now
        key = (author, kind)
        sent = self._recent.get(key)
        if sent is None:
            sent = deque(maxlen=self.per_author)
            self._recent[key] = sent
            while len(self._recent) > self.max_authors:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(key)
            if dedupe_key is not None and any(s.dedupe_key == dedupe_key for s in sent):
                return  # a resend of a message already counted
        sent.append(_Sent(now, digest, dedupe_key))
