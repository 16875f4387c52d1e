"""Room traffic over a Redis Cluster's sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7).

Classic pub/sub in a cluster copies every publication to every Redis node; sharded pub/sub
keeps a channel on the shard that owns its hash slot. A room's channel is named as before, so
rooms spread over the shards, and a node holds one subscribing connection per shard that has
rooms it wants (redis-py's ClusterPubSub), each read by its own task. When the cluster's slots
move, redis-py moves the subscriptions along (on its next refresh of the slot map).

Everything else (what the node wants, the task that brings the subscriptions in line, echo
filtering, publishing through the node's one pipelined publisher) is `RedisBroker`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import cast

from redis.asyncio.cluster import ClusterPubSub, RedisCluster

from .broker import RedisBroker
from .publisher import Publisher

log = logging.getLogger(__name__)

READ_WAIT = 1.0  # seconds one read on a shard's connection waits for news
SUPERVISE_EVERY = 0.5  # seconds between checks for shards that need a reader
MAX_BACKOFF = 5.0


class ShardedRedisBroker(RedisBroker):
    mode = "redis-cluster"

    def __init__(
        self,
        redis: RedisCluster,
        node_id: str,
        prefix: str,
        *,
        publisher: Publisher,
        timeout: float,
    ) -> None:
        super().__init__(redis, node_id, prefix, publisher=publisher, timeout=timeout)
        self._cluster = redis
        self._shards = cast(ClusterPubSub, self._pubsub)  # what a cluster client's pubsub() is
        self._readers: dict[str, asyncio.Task[None]] = {}  # shard (host:port) -> its reader
        self._failing: set[str] = set()  # shards whose last read failed

    async def _add(self, channels: set[str]) -> None:
        # the slot map first (a no-op once the client has it), then one SSUBSCRIBE per
        # channel: a command's channels must share a slot
        await self._cluster.initialize()
        await self._shards.ssubscribe(*channels)

    async def _drop(self, channels: set[str]) -> None:
        await self._shards.sunsubscribe(*channels)

    def _start_listening(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._supervise(), name=f"broker-shards:{self.node_id}")]

    def _is_connected(self) -> bool:
        return not self._failing

    async def close(self) -> None:
        for reader in self._readers.values():
            reader.cancel()
        for reader in list(self._readers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await super().close()

    async def _supervise(self) -> None:
        """One reader per shard this node is subscribed on; shards come and go with the
        rooms wanted and with the cluster's slot map."""
        try:
            while True:
                for name in list(self._shards.node_pubsub_mapping):
                    if name not in self._readers or self._readers[name].done():
                        self._readers[name] = asyncio.create_task(
                            self._read(name), name=f"broker-shard:{name}"
                        )
                await asyncio.sleep(SUPERVISE_EVERY)
        finally:
            for reader in self._readers.values():
                reader.cancel()

    async def _read(self, name: str) -> None:
        backoff = 0.1
        while name in self._shards.node_pubsub_mapping:
            node = self._cluster.get_node(node_name=name)
            if node is None:
                break  # the shard left the cluster; its channels were moved elsewhere
            try:
                message = await self._shards.get_sharded_message(
                    ignore_subscribe_messages=False, timeout=READ_WAIT, target_node=node
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (any failure reconnects the shard)
                if name not in self._failing:
                    log.warning("redis shard %s lost (%s); reconnecting", name, exc)
                self._failing.add(name)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if name in self._failing:
                self._failing.discard(name)
                log.info("redis shard %s is back", name)
            backoff = 0.1
            if message is None:
                continue
            if message["type"] == "smessage":
                self._dispatch(message["channel"], message["data"])
            elif message["type"] == "ssubscribe":
                self._confirmed(message["channel"])
        self._failing.discard(name)
