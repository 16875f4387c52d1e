"""Type aliases for what db functions accept."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A connection we hold (usually inside a transaction).
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
# Anything that can run one query: a held connection or the pool.
Executor: TypeAlias = "Conn | asyncpg.Pool[asyncpg.Record]"
