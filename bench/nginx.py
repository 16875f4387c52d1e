"""The repository's config/nginx.conf, rendered for nodes started here (the bench's
`--nodes N`, and the tests' nginx in tests/lb.py): one file, never a copy.

Only what must differ is rewritten: the upstream's `server` lines (one per node, with the
parameters the shipped lines have), `listen`, the access log, nginx's temporary files (nginx
may run as an unprivileged user) and, for the bench, whose thousands of sockets all come from
one machine, the per-address connection limit. Every substitution must match where it is
expected, so a change to the shipped config that would leave a test running some other
config fails loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from .procs import pin_to

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "config" / "nginx.conf"
INSTALL_HINT = "install Debian's nginx package (apt-get install nginx)"

_UPSTREAM = re.compile(r"(upstream peerspark \{\n)(.*?)(\n\s*\})", re.S)
_SERVER = re.compile(r"^(\s*)server 127\.0\.0\.1:\d+(?P<rest>[^;]*);\n?", re.M)
_LISTEN = re.compile(r"^(\s*)listen 8080;$", re.M)
_ACCESS_LOG = re.compile(r"^(\s*)access_log /var/log/nginx/access\.log (\w+);$", re.M)
_LIMIT_CONN = re.compile(r"^(\s*)limit_conn peerspark_per_address \d+;$", re.M)


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None)


def _once(pattern: re.Pattern[str], repl: str, text: str, what: str) -> str:
    out, n = pattern.subn(repl, text)
    if n != 1:
        raise ValueError(f"config/nginx.conf: expected one {what}, found {n}")
    return out


def render(
    conf: str,
    *,
    listen: int,
    upstreams: list[int],
    workdir: Path,
    per_address_limit: int | None = None,
) -> str:
    """config/nginx.conf for nodes on 127.0.0.1:`upstreams`, listening on `listen`."""
    block = _UPSTREAM.search(conf)
    if block is None:
        raise ValueError("config/nginx.conf: no `upstream peerspark { ... }` block")
    lines = list(_SERVER.finditer(block.group(2)))
    if not lines:
        raise ValueError("config/nginx.conf: no `server 127.0.0.1:PORT ...;` in the upstream")
    indent, rest = lines[0].group(1), lines[0].group("rest")
    servers = "".join(f"{indent}server 127.0.0.1:{port}{rest};\n" for port in upstreams)
    body = block.group(2)
    body = body[: lines[0].start()] + servers + body[lines[-1].end() :]
    conf = conf[: block.start(2)] + body.rstrip("\n") + conf[block.end(2) :]
    conf = _once(_LISTEN, rf"\g<1>listen 127.0.0.1:{listen};", conf, "`listen 8080;`")
    conf = _once(
        _ACCESS_LOG, rf"\g<1>access_log {workdir / 'access.log'} \g<2>;", conf, "access_log"
    )
    if per_address_limit is not None:
        conf = _once(
            _LIMIT_CONN,
            rf"\g<1>limit_conn peerspark_per_address {per_address_limit};",
            conf,
            "limit_conn",
        )
    temp = workdir / "temp"
    temp.mkdir(exist_ok=True)
    temp.chmod(0o777)  # nginx's workers may run as nobody
    paths = "".join(
        f"    {kind}_temp_path {temp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return conf.replace("http {\n", "http {\n" + paths, 1)


def command(binary: str, conf: Path, workdir: Path) -> list[str]:
    """nginx in the foreground with its pid file and error log in `workdir`."""
    globals_ = f"daemon off; pid {workdir / 'nginx.pid'}; error_log {workdir / 'error.log'};"
    return [binary, "-p", str(workdir), "-c", str(conf), "-g", globals_]


def write_config(
    workdir: Path, *, listen: int, upstreams: list[int], per_address_limit: int | None = None
) -> Path:
    workdir.chmod(0o755)
    conf = workdir / "nginx.conf"
    conf.write_text(
        render(
            NGINX_CONF.read_text(),
            listen=listen,
            upstreams=upstreams,
            workdir=workdir,
            per_address_limit=per_address_limit,
        )
    )
    return conf


@dataclass
class NginxProcess:
    """nginx started by the bench (asyncio)."""

    proc: asyncio.subprocess.Process
    port: int
    workdir: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGQUIT)  # graceful: finish what is open
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def start_nginx(
    workdir: Path,
    *,
    listen: int,
    upstreams: list[int],
    per_address_limit: int | None = None,
    cpus: list[int] | None = None,
) -> NginxProcess:
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError(f"--nodes needs nginx in front of the nodes: {INSTALL_HINT}")
    conf = write_config(
        workdir, listen=listen, upstreams=upstreams, per_address_limit=per_address_limit
    )
    check = await asyncio.create_subprocess_exec(
        binary, "-t", "-q", *command(binary, conf, workdir)[1:],
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await check.communicate()
    if check.returncode != 0:
        raise RuntimeError(f"nginx refused the rendered config:\n{err.decode()}")
    proc = await asyncio.create_subprocess_exec(
        *command(binary, conf, workdir),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
        preexec_fn=pin_to(cpus),
    )
    nginx = NginxProcess(proc, listen, workdir)
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", listen)
            writer.close()
            return nginx
        except OSError:
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
    await nginx.stop()
    log = workdir / "error.log"
    raise RuntimeError("nginx did not start:\n" + (log.read_text() if log.exists() else ""))
