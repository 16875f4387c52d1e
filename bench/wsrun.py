"""One websocket run: seed, start the load-generator processes, drive the phases, measure the
server, and assemble the result."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import lean, wire
from .context import Context, Target, machine_load, rest_session
from .generator import WorkerProc, next_event, start_workers
from .procs import RedisProcess, Sample, start_redis
from .report import run_name
from .scenarios import WsConfig
from .seed import Account, RestApi, create_rooms
from .stats import Histogram, merged


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:.2f}ms" if ms < 10 else f"{ms:.1f}ms" if ms < 1000 else f"{seconds:.2f}s"


class WsRun:
    def __init__(self, ctx: Context, config: WsConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.label = f"{config.scenario}/{run_name(config.kind, config.client)}"
        self.timeline: dict[int, dict[str, Any]] = {}
        # filled in as the run goes
        self.target: Target
        self.specs: list[wire.ClientSpec] = []
        self.seeding: dict[str, Any] = {}
        self.load_before: dict[str, Any] = {}
        self.samples: dict[str, Sample | None] = {}
        self.ready: list[wire.Ready] = []
        self.sent: list[wire.Sent] = []
        self.done: list[wire.Done] = []
        self.connect_seconds = 0.0
        self.start = 0.0
        self.db_cpu: float | None = None
        self.database: dict[str, str] | None = None
        self.redis: RedisProcess | None = None
        self.stall: tuple[float, float] | None = None  # (from, to) seconds after the start
        self.receiver: str | None = None  # the C receiver's binary, when the listeners use it

    def log(self, text: str) -> None:
        self.ctx.log(f"{self.label}: {text}")

    # --- setting up ------------------------------------------------------------------------

    async def _people(self, target: Target) -> tuple[list[wire.ClientSpec], dict[str, Any]]:
        """Accounts, rooms and each client's part."""
        cfg = self.config
        seeding: dict[str, Any] = {}
        started = time.monotonic()
        if cfg.kind == "product":
            async with rest_session() as session:
                api = RestApi(target.base_url, session)
                seeder = self.ctx.seeder(api)
                seeding["accounts"] = type(seeder).__name__
                accounts = await seeder.accounts(cfg.clients, self.log)
                groups = self._groups(accounts)
                rooms = await create_rooms(api, groups, self.log) if groups else []
        else:
            accounts = [Account("", f"user{i}", "") for i in range(cfg.clients)]
            groups = self._groups(accounts)
            rooms = [f"room-{i}" for i in range(len(groups))]
        seeding["seconds"] = round(time.monotonic() - started, 2)
        room_of = {id(a): rooms[r] for r, group in enumerate(groups) for a in group}
        senders_in = self._senders_per_room()
        room_index = {room: r for r, room in enumerate(rooms)}
        specs: list[wire.ClientSpec] = []
        rank: dict[str, int] = {}
        for account in accounts:
            room = room_of.get(id(account))
            sends = None
            if room is not None:
                k = rank.get(room, 0)
                rank[room] = k + 1
                if k < senders_in[room_index[room]]:
                    sends = room
            specs.append(
                wire.ClientSpec(
                    token=account.token,
                    name=account.username,
                    rooms=([room] if room else [])
                    + ([f"user:{account.id}"] if cfg.user_rooms and cfg.kind == "product" else []),
                    sends_to=sends,
                )
            )
        return specs, seeding

    def _groups(self, accounts: list[Account]) -> list[list[Account]]:
        cfg = self.config
        if not cfg.rooms:
            return []
        groups: list[list[Account]] = [[] for _ in range(cfg.rooms)]
        for i, account in enumerate(accounts):
            groups[i % cfg.rooms].append(account)
        return groups

    def _senders_per_room(self) -> list[int]:
        cfg = self.config
        if not cfg.rooms:
            return []
        return [
            cfg.senders // cfg.rooms + (1 if r < cfg.senders % cfg.rooms else 0)
            for r in range(cfg.rooms)
        ]

    def _lean_receiver(self, specs: list[wire.ClientSpec]) -> str | None:
        """The C receiver's binary if this run's listeners are to use it."""
        cfg = self.config
        if cfg.receiver == "python" or all(s.sends_to for s in specs):
            return None
        why = lean.unsupported(cfg)
        if why is None:
            built = lean.build(self.ctx.out_root)
            if isinstance(built, Path):
                return str(built)
            why = built
        self.log(f"listeners receive in Python, not in C: {why}")
        return None

    def _plans(self, target: Target, specs: list[wire.ClientSpec]) -> list[wire.WsPlan]:
        cfg = self.config
        self.receiver = self._lean_receiver(specs)
        concurrency = [cfg.connect_concurrency] * self.ctx.workers
        if self.receiver:
            # One C receiver takes every listener (one process on the generator's core wakes
            # less often than several, each wake-up reading more sockets), with as many
            # handshakes in flight as the Python workers would have had together; the
            # senders are spread over the workers as before.
            sending = [s for s in specs if s.sends_to]
            n = max(1, min(self.ctx.workers, len(sending)))
            parts = [sending[w::n] for w in range(n)]
            parts[0] += [s for s in specs if not s.sends_to]
            concurrency[0] = cfg.connect_concurrency * self.ctx.workers
        else:
            n = max(1, min(self.ctx.workers, len(specs) or 1))
            parts = [specs[w::n] for w in range(n)]
        total_senders = sum(1 for s in specs if s.sends_to) or 1
        plans = []
        if target.spread_sources:
            # 127.0.N.1: nginx's ip_hash keys on the first three octets
            for i, spec in enumerate(specs):
                spec.source = f"127.0.{i % 250 + 1}.1"
        for w, part in enumerate(parts):
            senders = sum(1 for s in part if s.sends_to)
            plans.append(
                wire.WsPlan(
                    kind=cfg.kind,
                    url=target.ws_url,
                    clients=part,
                    rate=cfg.rate * senders / total_senders,
                    duration=cfg.duration,
                    size=cfg.size,
                    binary=cfg.binary,
                    connect_concurrency=concurrency[w],
                    drop_at=cfg.drop_at,
                    cpus=self.ctx.placement.clients,
                    worker=w,
                    ack_timeout=cfg.ack_timeout,
                    client=cfg.client,
                    receiver=self.receiver,
                )
            )
        return plans

    # --- running ---------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        cfg = self.config
        ctx = self.ctx
        load_before = machine_load()
        node_env = {}
        if cfg.heartbeat:
            node_env["WS_HEARTBEAT"] = str(cfg.heartbeat)
        if cfg.redis_stall_at is not None:
            self.redis = await start_redis(ctx.run_dir("redis"))
            node_env["REDIS_URL"] = self.redis.url
            self.log(f"own redis-server at {self.redis.url} (paused at {cfg.redis_stall_at:g}s)")
        try:
            target = await ctx.open_target(
                cfg.kind, nodes=cfg.nodes, balancer=cfg.balancer, env=node_env
            )
        except BaseException:
            if self.redis is not None:
                self.redis.stop()
            raise
        if cfg.kind == "product":
            self.database = await ctx.database_settings()
        self.log(f"server at {target.base_url} ({target.where}); {ctx.placement.describe()}")
        try:
            return await self._run(target, load_before)
        finally:
            await target.stop()
            if self.redis is not None:
                self.redis.stop()

    async def _sample(self, target: Target, *, detailed: bool = False) -> Sample | None:
        if target.probe is None:
            return None
        try:
            if detailed:
                return await target.probe.detailed()
            return await target.probe.sample()
        except Exception as exc:  # noqa: BLE001 (a missing sample is reported, the run goes on)
            self.log(f"could not read the server's CPU and memory: {exc}")
            return None

    async def _run(self, target: Target, load_before: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        self.target = target
        self.load_before = load_before
        self.specs, self.seeding = await self._people(target)
        plans = self._plans(target, self.specs)
        events: asyncio.Queue[wire.Event | Exception] = asyncio.Queue()
        await asyncio.sleep(cfg.settle / 2)  # let the seeding's garbage settle first
        # and its work end (a join's attendance and analytics go on after its answer): what
        # the server does from here on is the run's (connect: 667-1,316 connects per CPU-s
        # over three runs of one code while it did not wait)
        await self._quiesce(target)
        self.samples["before"] = await self._sample(target)
        db_before = self.ctx.db_cpu() if target.owned else None
        self.log(
            f"connecting {len(self.specs)} clients from {len(plans)} worker processes"
            + (f" into {cfg.rooms} rooms" if cfg.rooms else "")
            + ("; listeners in the C receiver" if self.receiver else "")
        )
        workers = await start_workers(plans, events)
        try:
            await self._connect_phase(workers, events)
            await self._send_phase(workers, events)
        finally:
            await asyncio.gather(*(w.stop() for w in workers))
        db_after = self.ctx.db_cpu() if target.owned else None
        if db_before is not None and db_after is not None:
            self.db_cpu = db_after - db_before
        return self._result()

    async def _connect_phase(
        self, workers: list[WorkerProc], events: asyncio.Queue[wire.Event | Exception]
    ) -> None:
        started = time.monotonic()
        while len(self.ready) < len(workers):
            event = await next_event(events, 600)
            if isinstance(event, wire.Ready):
                self.ready.append(event)
        self.connect_seconds = time.monotonic() - started
        handshake = merged(Histogram.from_wire(r.connect) for r in self.ready)
        errors = self._connect_errors()
        self.log(
            f"{self.connected} connected, {sum(r.failed for r in self.ready)} failed in "
            f"{self.connect_seconds:.1f}s (handshake p50 {_ms(handshake.percentile(50))}, "
            f"p99 {_ms(handshake.percentile(99))})" + (f"; errors {errors}" if errors else "")
        )
        await asyncio.sleep(self.config.settle)
        if self.config.balancer:
            await self._quiesce(self.target)
        self.samples["connected"] = await self._sample(self.target, detailed=True)

    async def _quiesce(self, target: Target, limit: float = 20.0) -> None:
        """Wait until the servers are idle (under 10% of a core for a second), at most `limit`
        seconds: before a run, the seeding's work; with several nodes, the connect phase's
        presence news (each arrival announced to every node and fanned out to its members),
        which goes on after the last join and would count as the sending's CPU."""
        started = time.monotonic()
        previous = await self._sample(target)
        while previous is not None and time.monotonic() - started < limit:
            await asyncio.sleep(1.0)
            current = await self._sample(target)
            if current is None:
                return
            busy = (current.cpu_seconds - previous.cpu_seconds) / (current.at - previous.at)
            if busy < 0.1:
                self.log(f"servers idle after {time.monotonic() - started:.1f}s more")
                return
            previous = current
        self.log(f"servers still busy after {limit:.0f}s; starting anyway")

    @property
    def connected(self) -> int:
        return sum(r.connected for r in self.ready)

    def _connect_errors(self) -> dict[str, int]:
        errors: dict[str, int] = {}
        for r in self.ready:
            for k, v in r.errors.items():
                errors[k] = errors.get(k, 0) + v
        return errors

    async def _send_phase(
        self, workers: list[WorkerProc], events: asyncio.Queue[wire.Event | Exception]
    ) -> None:
        cfg = self.config
        self.start = time.time() + 0.5
        for w in workers:
            await w.send(wire.Go(start=self.start))
        what = (
            f"sending {cfg.rate:g} msg/s for {cfg.duration:g}s"
            if cfg.rate
            else f"watching for {cfg.duration:g}s"
        )
        if cfg.drop_at is not None:
            what += f"; every client drops and resumes at {cfg.drop_at:g}s"
        self.log(what)
        sampler = asyncio.create_task(self._sample_cpu(self.target, self.start))
        staller = asyncio.create_task(self._stall_redis()) if self.redis else None
        deadline = cfg.duration + cfg.ack_timeout + cfg.drain + 120
        try:
            while len(self.done) < len(workers):
                event = await next_event(events, deadline)
                if isinstance(event, wire.Tick):
                    self._on_tick(event, len(workers))
                elif isinstance(event, wire.Sent):
                    self.sent.append(event)
                    if len(self.sent) == len(workers):
                        # Sending is over everywhere: tell the workers what to wait for.
                        self.samples["sent"] = await self._sample(self.target)
                        finals = self._finals(self.sent)
                        for w in workers:
                            await w.send(wire.Expect(finals=finals, drain=cfg.drain))
                elif isinstance(event, wire.Done):
                    self.done.append(event)
            # before the clients hang up: closing thousands of sockets is not the run's work
            self.samples["end"] = await self._sample(self.target, detailed=True)
        finally:
            for task in (sampler, staller):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if self.redis is not None:
                self.redis.resume()

    async def _stall_redis(self) -> None:
        cfg = self.config
        if self.redis is None or cfg.redis_stall_at is None:
            return
        await asyncio.sleep(max(0.0, self.start + cfg.redis_stall_at - time.time()))
        self.redis.pause()
        began = time.time() - self.start
        self.log(f"redis paused at {began:.1f}s for {cfg.redis_stall_for:g}s")
        try:
            await asyncio.sleep(cfg.redis_stall_for)
        finally:
            self.redis.resume()
        self.stall = (began, time.time() - self.start)
        self.log(f"redis answers again at {self.stall[1]:.1f}s")

    def _finals(self, sent: list[wire.Sent]) -> dict[str, int]:
        finals: dict[str, int] = {}
        if self.config.kind == "echo":
            for s in sent:
                for room, n in s.sent_count.items():
                    finals[room] = finals.get(room, 0) + n
        else:
            for s in sent:
                for room, seq in s.max_seq.items():
                    finals[room] = max(finals.get(room, 0), seq)
        return finals

    async def _sample_cpu(self, target: Target, start: float) -> None:
        """The server's CPU use each second, for the timeline."""
        await asyncio.sleep(max(0.0, start - time.time()))
        previous = await self._sample(target)
        second = 0
        while previous is not None:
            await asyncio.sleep(max(0.0, start + second + 1 - time.time()))
            current = await self._sample(target)
            if current is None:
                return
            row = self.timeline.setdefault(second, {})
            row["server_cpu"] = round(current.cpu_seconds - previous.cpu_seconds, 3)
            row["server_rss_mib"] = round(current.rss_bytes / 2**20, 1)
            previous = current
            second += 1

    def _on_tick(self, tick: wire.Tick, workers: int) -> None:
        row = self.timeline.setdefault(tick.second, {})
        row.setdefault("_hist", Histogram()).merge(Histogram.from_wire(tick.latency))
        for key in ("deliveries", "sent", "acked", "errors"):
            row[key] = row.get(key, 0) + getattr(tick, key)
        row["_ticks"] = row.get("_ticks", 0) + 1
        if row["_ticks"] == workers and not self.ctx.quiet:
            h: Histogram = row["_hist"]
            cpu = row.get("server_cpu")
            self.log(
                f"t={tick.second + 1:>3}s  deliveries {row['deliveries']:>8,}/s  "
                f"p50 {_ms(h.percentile(50)):>8}  p99 {_ms(h.percentile(99)):>8}  "
                f"max {_ms(h.max if h.n else None):>8}  sent {row['sent']:>6}/s  "
                f"acked {row['acked']:>6}/s  errors {row['errors']}"
                + (f"  server CPU {cpu * 100:.0f}%" if cpu is not None else "")
            )

    # --- the result --------------------------------------------------------------------------

    def _result(self) -> dict[str, Any]:
        target, ready, sent, done = self.target, self.ready, self.sent, self.done
        connected = self.connected
        failed = sum(r.failed for r in ready)
        connect_hist = merged(Histogram.from_wire(r.connect) for r in ready)
        join_hist = merged(Histogram.from_wire(r.join) for r in ready)
        samples = self.samples
        cfg = self.config
        latency = merged(Histogram.from_wire(d.latency) for d in done)
        ack_latency = merged(Histogram.from_wire(s.ack_latency) for s in sent)
        resume = merged(Histogram.from_wire(d.resume) for d in done)
        deliveries = sum(d.deliveries for d in done)
        errors: dict[str, int] = self._connect_errors()
        for d in done:
            for k, v in d.errors.items():
                errors[k] = errors.get(k, 0) + v
        seconds_with_deliveries = [s for s, row in self.timeline.items() if row.get("deliveries")]
        span = (max(seconds_with_deliveries) + 1) if seconds_with_deliveries else cfg.duration
        span = max(span, cfg.duration) if cfg.rate else span
        server: dict[str, Any] = {"source": target.probe.source if target.probe else None}
        before, conn_s, sent_s, end = (
            samples.get(k) for k in ("before", "connected", "sent", "end")
        )
        if before and conn_s:
            server["rss_before_mib"] = round(before.rss_bytes / 2**20, 1)
            server["rss_connected_mib"] = round(conn_s.rss_bytes / 2**20, 1)
            if connected:
                per = (conn_s.rss_bytes - before.rss_bytes) / connected
                server["memory_per_connection_kib"] = round(per / 1024, 2)
            connect_cpu = conn_s.cpu_seconds - before.cpu_seconds
            server["connect_cpu_seconds"] = round(connect_cpu, 3)
            if connected and connect_cpu > 0:
                # handshake + token check + join (and the settle after, an idle server's)
                server["connects_per_cpu_second"] = round(connected / connect_cpu)
        if conn_s and end:
            cpu = end.cpu_seconds - conn_s.cpu_seconds
            server["cpu_seconds"] = round(cpu, 3)
            server["rss_end_mib"] = round(end.rss_bytes / 2**20, 1)
            if deliveries and cpu > 0:
                server["deliveries_per_cpu_second"] = round(deliveries / cpu)
        if conn_s and sent_s and sent_s.at > conn_s.at:
            # from the start to the last acknowledgement (the sending window, and more when
            # acknowledgements lagged behind)
            busy = sent_s.cpu_seconds - conn_s.cpu_seconds
            server["cpu_utilisation"] = round(busy / (sent_s.at - conn_s.at), 3)
        if deliveries and "cpu_seconds" in server:
            server["cpu_us_per_delivery"] = round(server["cpu_seconds"] / deliveries * 1e6, 3)
        if conn_s and end and conn_s.nodes and end.nodes:
            server["nodes"] = node_figures(conn_s, end)
            if end.balancer_cpu_seconds is not None and conn_s.balancer_cpu_seconds is not None:
                balancer = end.balancer_cpu_seconds - conn_s.balancer_cpu_seconds
                server["balancer_cpu_seconds"] = round(balancer, 3)
        if self.db_cpu is not None:
            server["database_cpu_seconds"] = round(self.db_cpu, 3)
        client_cores = len(self.ctx.placement.clients or []) or (os.cpu_count() or 1)
        run_wall = time.time() - self.start
        generator = generator_figures(ready, sent, done, self.start, run_wall, client_cores)
        generator["receiver"] = "c" if self.receiver else "python"
        if deliveries:
            # robust to a busy machine, unlike the share: what receiving costs per message
            generator["cpu_us_per_delivery"] = round(generator["cpu_seconds"] / deliveries * 1e6, 2)
        result: dict[str, Any] = {
            "scenario": cfg.scenario,
            "server_kind": cfg.kind,
            "run": run_name(cfg.kind, cfg.client),
            "description": cfg.description,
            "config": asdict(cfg),
            "target": {"url": target.base_url, "where": target.where},
            "placement": self.ctx.placement.describe(),
            "workers": len(done),
            "machine_load_before": self.load_before,
            "machine_load_after": machine_load(),
            "seeding": self.seeding,
            "database": self.database,
            "connect": {
                "clients": len(self.specs),
                "connected": connected,
                "failed": failed,
                "seconds": round(self.connect_seconds, 2),
                "handshake": connect_hist.summary(),
                "join": join_hist.summary(),
            },
            "delivery": {
                "sent": sum(s.sent for s in sent),
                "acked": sum(s.acked for s in sent),
                "deliveries": deliveries,
                "deliveries_per_second": round(deliveries / span) if span else 0,
                "latency": latency.summary(),
                "ack_latency": ack_latency.summary(),
                "missing": sum(d.missing for d in done),
                "extra": sum(d.extra for d in done),
                "duplicates": sum(d.duplicates for d in done),
                "gaps": sum(d.gaps for d in done),
                "resync": sum(d.resync for d in done),
                "errors": errors,
            },
            "server": server,
            "generator": generator,
            "timeline": self._timeline_rows(),
        }
        if self.stall is not None:
            result["redis_stall"] = self._stall_figures()
        if cfg.drop_at is not None:
            result["burst"] = {
                "dropped": connected,
                "back": resume.n,
                "not_back": sum(d.not_back for d in done),
                "resume": resume.summary(),
                "all_back_within_5s": bool(
                    resume.n == connected and resume.n and resume.max <= 5.0
                ),
            }
        if cfg.scenario == "idle" or not cfg.rate:
            idle_cpu: float | None = server.get("cpu_seconds")
            beat = cfg.heartbeat
            idle: dict[str, Any] = {"window_seconds": cfg.duration, "heartbeat_seconds": beat}
            if idle_cpu is not None and connected:
                idle["server_cpu_share"] = round(idle_cpu / cfg.duration, 4)
                if beat:
                    pings = connected * cfg.duration / beat
                    idle["cpu_microseconds_per_ping"] = round(idle_cpu / pings * 1e6, 1)
            result["idle"] = idle
        return result

    def _stall_figures(self) -> dict[str, Any]:
        """Delivery latency in the seconds Redis was paused against the seconds before it."""
        if self.stall is None:
            return {}
        began, ended = self.stall
        during, before = Histogram(), Histogram()
        acked_during = 0
        for second, row in self.timeline.items():
            hist = row.get("_hist")
            if second + 1 <= began:
                if hist is not None:
                    before.merge(hist)
            elif second >= began - 0.05 and second + 1 <= ended + 0.05:  # wholly inside
                if hist is not None:
                    during.merge(hist)
                acked_during += row.get("acked", 0)
        done = self.done
        return {
            "paused_at": round(began, 2),
            "resumed_at": round(ended, 2),
            "p99_before": before.percentile(99),
            "p99_during": during.percentile(99),
            "max_during": during.max if during.n else None,
            "acked_during": acked_during,
            "missing": sum(d.missing for d in done),
            "duplicates": sum(d.duplicates for d in done),
            "gaps": sum(d.gaps for d in done),
        }

    def _timeline_rows(self) -> list[dict[str, Any]]:
        rows = []
        for second in sorted(self.timeline):
            row = self.timeline[second]
            h: Histogram = row.get("_hist") or Histogram()
            rows.append(
                {
                    "second": second,
                    "deliveries": row.get("deliveries", 0),
                    "sent": row.get("sent", 0),
                    "acked": row.get("acked", 0),
                    "errors": row.get("errors", 0),
                    "p50": h.percentile(50),
                    "p99": h.percentile(99),
                    "max": h.max if h.n else None,
                    "server_cpu": row.get("server_cpu"),
                    "server_rss_mib": row.get("server_rss_mib"),
                }
            )
        return rows


# Above this share of its cores while sending, the load generator may be what limits a run:
# its receivers fall behind, the server's writes pile up and coalesce, and the server looks
# cheaper per delivery than it is. Such a run's ratios are not printed.
GENERATOR_BOUND_SHARE = 0.70


def generator_figures(
    ready: list[wire.Ready],
    sent: list[wire.Sent],
    done: list[wire.Done],
    start: float,
    run_wall: float,
    cores: int,
) -> dict[str, Any]:
    """The load generator's own CPU: over the sending window (Go to the last acknowledgement,
    what the server's figures are measured over) and over the whole run after connecting."""
    after_connect = sum(d.cpu_seconds for d in done) - sum(r.cpu_seconds for r in ready)
    figures: dict[str, Any] = {
        "processes": len(done),
        "cores": cores,
        "cpu_seconds": round(after_connect, 2),
        "cpu_share_of_its_cores": round(after_connect / run_wall / cores, 3) if run_wall else None,
    }
    window = max((s.at for s in sent), default=0.0) - start
    sending_cpu = sum(s.cpu_seconds for s in sent) - sum(r.cpu_seconds for r in ready)
    if window > 0.5 and all(s.cpu_seconds for s in sent):
        figures["sending_window_seconds"] = round(window, 2)
        figures["sending_cpu_share"] = round(sending_cpu / window / cores, 3)
    share = figures.get("sending_cpu_share", figures["cpu_share_of_its_cores"]) or 0.0
    figures["bound"] = share > GENERATOR_BOUND_SHARE
    return figures


def node_figures(start: Sample, end: Sample) -> list[dict[str, Any]]:
    """Each node's CPU seconds and the deliveries it made between two samples."""
    before = {n.name: n for n in start.nodes}
    rows = []
    for node in end.nodes:
        first = before.get(node.name)
        if first is None:
            continue
        cpu = node.cpu_seconds - first.cpu_seconds
        deliveries = node.deliveries - first.deliveries
        rows.append(
            {
                "node": node.name,
                "cpu_seconds": round(cpu, 3),
                "deliveries": int(deliveries),
                "cpu_us_per_delivery": round(cpu / deliveries * 1e6, 3) if deliveries else None,
            }
        )
    return rows


async def run_ws(ctx: Context, config: WsConfig, out_dir: Path | None = None) -> dict[str, Any]:
    """Run one websocket scenario; writes result.json and plot.png; returns the result."""
    from .report import write_ws_outputs

    result = await WsRun(ctx, config).run()
    nodes = f"-{config.nodes}nodes" if config.balancer else ""
    name = run_name(config.kind, config.client)
    folder = out_dir or ctx.run_dir(f"{config.scenario}-{name}{nodes}")
    write_ws_outputs(result, folder)
    result["output"] = str(folder)
    return result
