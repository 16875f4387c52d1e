"""nginx in front of real nodes, with the repository's own config/nginx.conf.

The shipped config is rendered for a test, never copied: its upstream's `server` lines get the
test nodes' ports, `listen` a free port, the access log a file of the test's, and (nginx may
run as an unprivileged user) its temporary files a folder of the test's. Every substitution
must match exactly where it is expected, so a change to the shipped config that would leave
the test running some other config fails here instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.nodes import ROOT

NGINX_CONF = ROOT / "config" / "nginx.conf"
INSTALL_HINT = "install Debian's nginx package (apt-get install nginx) to run it"

_UPSTREAM = re.compile(r"(upstream peerspark \{\n)(.*?)(\n\s*\})", re.S)
_SERVER = re.compile(r"^(\s*)server 127\.0\.0\.1:\d+(?P<rest>[^;]*);$", re.M)
_LISTEN = re.compile(r"^(\s*)listen 8080;$", re.M)
_ACCESS_LOG = re.compile(r"^(\s*)access_log /var/log/nginx/access\.log (\w+);$", re.M)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def _once(pattern: re.Pattern[str], repl: str, text: str, what: str) -> str:
    out, n = pattern.subn(repl, text)
    if n != 1:
        raise AssertionError(f"config/nginx.conf: expected one {what}, found {n}")
    return out


def render(conf: str, *, listen: int, upstreams: list[int], workdir: Path) -> str:
    """config/nginx.conf with this test's ports and files."""
    block = _UPSTREAM.search(conf)
    if block is None:
        raise AssertionError("config/nginx.conf: no `upstream peerspark { ... }` block")
    servers = _SERVER.findall(block.group(2))
    if len(servers) != len(upstreams):
        raise AssertionError(
            f"config/nginx.conf lists {len(servers)} nodes; the test runs {len(upstreams)}"
        )
    ports = iter(upstreams)
    body = _SERVER.sub(
        lambda m: f"{m.group(1)}server 127.0.0.1:{next(ports)}{m.group('rest')};", block.group(2)
    )
    conf = conf[: block.start(2)] + body + conf[block.end(2) :]
    conf = _once(_LISTEN, rf"\g<1>listen 127.0.0.1:{listen};", conf, "`listen 8080;`")
    conf = _once(
        _ACCESS_LOG, rf"\g<1>access_log {workdir / 'access.log'} \g<2>;", conf, "access_log"
    )
    temp = workdir / "temp"
    temp.mkdir(exist_ok=True)
    temp.chmod(0o777)  # nginx's workers may run as nobody
    paths = "".join(
        f"    {kind}_temp_path {temp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return conf.replace("http {\n", "http {\n" + paths, 1)


@dataclass
class Nginx:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def access_log(self) -> str:
        path = self.workdir / "access.log"
        return path.read_text() if path.exists() else ""

    def error_log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_nginx(binary: str, *, listen: int, upstreams: list[int], workdir: Path) -> Nginx:
    workdir.chmod(0o755)
    conf = workdir / "nginx.conf"
    conf.write_text(
        render(NGINX_CONF.read_text(), listen=listen, upstreams=upstreams, workdir=workdir)
    )
    globals_ = f"daemon off; pid {workdir / 'nginx.pid'}; error_log {workdir / 'error.log'};"
    check = subprocess.run(
        [binary, "-t", "-q", "-p", str(workdir), "-c", str(conf), "-g", globals_],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if check.returncode != 0:
        raise AssertionError(f"nginx -t refused the rendered config:\n{check.stderr}")
    proc = subprocess.Popen(
        [binary, "-p", str(workdir), "-c", str(conf), "-g", globals_],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lb = Nginx(proc, listen, workdir)
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(lb.url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return lb
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            lb.stop()
            raise AssertionError("nginx did not start:\n" + lb.error_log())
        time.sleep(0.05)
