from collections.abc import Iterable
from typing import Protocol, TypeVar

class _Member(Protocol):
    fd: int

M = TypeVar("M", bound=_Member)

def send_all(members: Iterable[M], frame: bytes) -> list[tuple[M, int]]: ...
