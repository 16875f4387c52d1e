"""Command line: python -m peerspark_rt {serve,migrate} ..."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator

from aiohttp import web

from . import logs
from .config import ConfigError, Settings, ensure_secrets, load_settings, variable_names
from .db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from .db.pool import apply_schema, ensure_database

log = logging.getLogger("peerspark_rt")

EMBEDDED_DATABASE = "peerspark"

DESCRIPTION = """\
PeerSpark RT: the realtime backend of a collaborative learning platform.

commands:
  serve     serve the REST API, /ws, /health and /metrics. With no DATABASE_URL an embedded
            PostgreSQL is started in the data folder (PEERSPARK_DATA_DIR, default ./.data);
            with no REDIS_URL the broker, presence and rate limits are in-process.
  migrate   apply schema.sql to the database (idempotent) and exit.
  worker    run only the job worker (emails, reminders, daily analytics, clean-up), no HTTP.
            Every `serve` node runs one too unless RUN_WORKER=false; use this to run the
            workers as separate processes. Any number may run against one database.

Settings come from environment variables over config/defaults.toml; see README.md.
"""


@contextlib.contextmanager
def resolved_database(settings: Settings) -> Iterator[tuple[Settings, str]]:
    """Yield settings with a database URL, starting the embedded server when none is set."""
    if settings.database_url:
        yield settings, "PostgreSQL at DATABASE_URL"
        return
    server = EmbeddedPostgres(settings.data_dir / "postgres")
    try:
        admin = server.start()
        asyncio.run(ensure_database(admin, EMBEDDED_DATABASE))
        dsn = server.dsn(EMBEDDED_DATABASE)
        yield settings.replace(database_url=dsn), f"embedded PostgreSQL ({dsn})"
    finally:
        server.stop()


# The cyclic garbage collector's default thresholds (700, 10, 10) made it the largest single
# cost of a busy node: py-spy/perf on a reconnect storm of 5,000 sockets showed ~38% of the
# server's CPU in gc_collect_main and its visitors, because every collection of the older
# generations walks every live socket's objects. Collecting the young generation every 50,000
# allocations instead of 700 (older ones as before, relative to it) and freezing everything
# that exists once the node is up (modules, the app) cut that storm's server CPU by half. The
# price is at most a few MB of young garbage waiting a little longer.
GC_THRESHOLDS = (50_000, 20, 10)


def _tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _until_signalled() -> None:
    """Wait for SIGINT (Ctrl-C) or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve(settings: Settings, where_db: str) -> None:
    from .app import GuardedSite, build_app, make_runner, start_metrics_listener

    app = build_app(settings)
    runner = make_runner(app, settings)
    await runner.setup()
    site = GuardedSite(runner, settings, settings.host, settings.port)
    await site.start()
    port = site.port  # the real port when 0 was asked for
    metrics_runner = await start_metrics_listener(app, settings)
    broker = "redis" if settings.redis_url else "in-process"
    print(
        f"PeerSpark RT node {settings.node_id} listening on http://{settings.host}:{port} "
        f"(database: {where_db}; broker: {broker})",
        flush=True,
    )
    _tune_gc()
    await _until_signalled()
    await _stop_within(settings.shutdown_timeout, app, runner, site, metrics_runner)


async def _stop_within(
    deadline: float,
    app: web.Application,
    runner: web.AppRunner,
    site: web.BaseSite,
    metrics_runner: web.AppRunner | None,
) -> None:
    """A graceful stop, bounded: stop accepting (the listening socket closes, so a load
    balancer sends new connections elsewhere), let chat messages in flight be stored and
    acknowledged, close every websocket with 1001 "restart: reconnect", finish the requests
    in flight, then flush what waits for Redis and close the pools. Past `deadline` seconds
    the process exits anyway (status 1), whatever is still running."""
    from .app import drain

    log.info("stopping (within %.0fs)", deadline)
    started = time.monotonic()
    try:
        async with asyncio.timeout(deadline):
            await site.stop()
            if not await drain(app, deadline / 2):
                log.warning("requests still in flight after %.0fs; cutting them", deadline / 2)
            await runner.cleanup()
            if metrics_runner is not None:
                await metrics_runner.cleanup()
    except TimeoutError:
        log.error("stop took longer than SHUTDOWN_TIMEOUT (%.0fs); exiting anyway", deadline)
        logging.shutdown()
        os._exit(1)
    log.info("stopped in %.1fs", time.monotonic() - started)


async def _work(settings: Settings, where_db: str) -> None:
    from .app import build_app

    runner = web.AppRunner(
        build_app(settings.replace(run_worker=True)),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=10,
    )
    await runner.setup()  # runs the app's start-up: database, broker, services, the worker
    print(
        f"PeerSpark RT worker {settings.node_id} running "
        f"(database: {where_db}; concurrency {settings.worker_concurrency})",
        flush=True,
    )
    await _until_signalled()
    log.info("worker shutting down")
    await runner.cleanup()


def _run(coro_factory: object) -> None:
    try:
        import uvloop

        uvloop.run(coro_factory)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay runnable
        asyncio.run(coro_factory)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m peerspark_rt",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="environment variables: " + ", ".join(variable_names()),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    serve = commands.add_parser("serve", help="serve the product (default 127.0.0.1:8080)")
    serve.add_argument("--host", help="address to listen on (env HOST)")
    serve.add_argument("--port", type=int, help="port to listen on, 0 for any free one (env PORT)")
    commands.add_parser("migrate", help="apply schema.sql and exit")
    commands.add_parser(
        "worker", help="run the job worker only (emails, reminders, analytics, clean-up)"
    )
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
        overrides: dict[str, object] = {}
        if getattr(args, "host", None):
            overrides["host"] = args.host
        if getattr(args, "port", None) is not None:
            overrides["port"] = args.port
        if "port" in overrides and not 0 <= args.port <= 65535:
            raise ConfigError("--port: expected an integer from 0 to 65535")
        settings = settings.replace(**overrides)
        logs.configure(settings.log_level, settings.log_json, node=settings.node_id)
        settings = ensure_secrets(settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2

    try:
        with resolved_database(settings) as (settings, where_db):
            if args.command == "migrate":
                assert settings.database_url
                asyncio.run(apply_schema(settings.database_url))
                print(f"schema applied ({where_db})")
                return 0
            if args.command == "worker":
                _run(_work(settings, where_db))
            else:
                _run(_serve(settings, where_db))
    except EmbeddedPostgresError as exc:
        print(f"cannot start the embedded database: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
