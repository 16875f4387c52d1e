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
from .infra.embedded import EmbeddedPostgres, EmbeddedPostgresError
from .infra.pool import apply_schema, ensure_database
from .preflight import StartupError, check_database, check_redis

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
  admin     `admin grant EMAIL` makes that account a platform admin (how the first admin
            comes to be; admins then change roles with PUT /api/admin/users/{id}/role).
  stop      stop what `serve` left running from the data folder: the node (SIGTERM) and
            its embedded PostgreSQL (also one left behind by a node that was killed).

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


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT (Ctrl-C), SIGTERM, or SIGHUP (the terminal running the node was
    closed): each ends the node cleanly, and so stops the embedded database it started.
    Installed before start-up, so a signal that comes early is not fatal either."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _serve(settings: Settings, where_db: str) -> None:
    from .app import GuardedSite, build_app, make_runner, start_metrics_listener

    stop = _stop_on_signals()
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
    await stop.wait()
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

    stop = _stop_on_signals()
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
    await stop.wait()
    log.info("worker shutting down")
    await runner.cleanup()


async def _grant_admin(dsn: str, email: str) -> int:
    from .accounts.admin import grant_admin_by_email
    from .errors import NotFound
    from .infra.pool import Database

    db = await Database.connect(dsn, max_size=1)
    try:
        user = await grant_admin_by_email(db, email)
    except NotFound as exc:
        print(f"cannot grant: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await db.close()
    print(f"{user.email} ({user.username}) is a platform admin")
    return 0


def _run(coro_factory: object) -> None:
    try:
        import uvloop

        uvloop.run(coro_factory)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay runnable
        asyncio.run(coro_factory)  # type: ignore[arg-type]


def _preflight(settings: Settings, command: str) -> str | None:
    """Reach the configured services before starting (one line naming any that does not
    answer); `migrate` creates a database that does not exist yet."""
    created = None
    if settings.database_url:
        created = asyncio.run(check_database(settings.database_url, create=command == "migrate"))
    if settings.redis_url and command != "migrate":
        asyncio.run(check_redis(settings.redis_url))
    return created


def _stop(settings: Settings) -> int:
    """`make stop`: the node and embedded PostgreSQL `make run` left running."""
    folder = settings.data_dir / "postgres"
    if not (folder / "PG_VERSION").exists():
        print(f"nothing to stop: no embedded PostgreSQL in {folder}")
        return 0
    try:
        done = EmbeddedPostgres(folder).stop_everything()
    except EmbeddedPostgresError as exc:
        print(f"cannot stop the embedded database: {exc}", file=sys.stderr)
        return 1
    print("\n".join(done) if done else f"nothing running from {folder}")
    return 0


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
    commands.add_parser(
        "stop", help="stop the node and embedded PostgreSQL left running from the data folder"
    )
    admin = commands.add_parser("admin", help="platform admin tasks: admin grant EMAIL")
    admin_actions = admin.add_subparsers(dest="action", required=True, metavar="action")
    grant = admin_actions.add_parser("grant", help="make the account with EMAIL a platform admin")
    grant.add_argument("email", help="the account's email address")
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

    if args.command == "stop":
        return _stop(settings)
    try:
        created = _preflight(settings, args.command)
        if created:
            print(created, flush=True)
    except StartupError as exc:
        print(exc, file=sys.stderr)
        return 1

    try:
        with resolved_database(settings) as (settings, where_db):
            if args.command == "migrate":
                if not settings.database_url:
                    raise RuntimeError("settings.database_url is missing")
                asyncio.run(apply_schema(settings.database_url))
                print(f"schema applied ({where_db})")
                return 0
            if args.command == "admin":
                if not settings.database_url:
                    raise RuntimeError("settings.database_url is missing")
                return asyncio.run(_grant_admin(settings.database_url, args.email))
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
