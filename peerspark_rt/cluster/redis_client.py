"""The node's Redis client: one server (REDIS_URL) or a Redis Cluster (REDIS_CLUSTER=true, with
REDIS_URL naming any of its nodes).

With a cluster, room traffic goes over sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7): each
room's channel lives on the shard that owns its hash slot, so cross-node traffic is spread over
the shards instead of being copied to every Redis node. Keys that one script touches together
(a room's presence) carry a hash tag, so they live in one slot.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

RedisClient: TypeAlias = Redis | RedisCluster


def connect(url: str, *, cluster: bool, max_connections: int, timeout: float) -> RedisClient:
    """A client whose every call has a deadline (`timeout`; pub/sub's blocking read excepted:
    it waits for news)."""
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "socket_connect_timeout": 5,
        "socket_timeout": timeout,
        "health_check_interval": 15,
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    return Redis.from_url(url, **options)


async def server_version(client: RedisClient) -> str | None:
    """The Redis version (of the first node that answers, for a cluster)."""
    info: dict[str, Any] = await client.info("server")
    if isinstance(client, RedisCluster) and "redis_version" not in info:
        # a cluster answers per node: {"host:port": {...}, ...}
        info = next((v for v in info.values() if isinstance(v, dict)), {})
    version = info.get("redis_version")
    return str(version) if version is not None else None
