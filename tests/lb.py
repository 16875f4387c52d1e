"""nginx in front of real nodes, with the repository's own config/nginx.conf rendered for the
test's ports by bench/nginx.py (one file, never a copy; see there what is rewritten)."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.nginx import INSTALL_HINT, command, nginx_binary, write_config

__all__ = ["INSTALL_HINT", "Nginx", "nginx_binary", "start_nginx"]


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
    conf = write_config(workdir, listen=listen, upstreams=upstreams)
    argv = command(binary, conf, workdir)
    check = subprocess.run(
        [binary, "-t", "-q", *argv[1:]], capture_output=True, text=True, timeout=30
    )
    if check.returncode != 0:
        raise AssertionError(f"nginx -t refused the rendered config:\n{check.stderr}")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
