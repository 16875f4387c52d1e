"""What a new user meets in the first hour, tried as they would: every code block the docs
mark runnable (```python runnable, ```sh runnable in README.md and PROTOCOL.md) runs as
written against a real node, the curl walk twice in a row; and a test run leaves nothing in
the system's temp folder."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import searchable_tmpdir
from tests.nodes import ROOT, Node, start_node

DOCS = ("README.md", "PROTOCOL.md")
_BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.M | re.S)


def _blocks() -> list[tuple[str, str, str, bool]]:
    """(where, language, code, runnable) of every fenced block of the docs."""
    found = []
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            runnable = "runnable" in match.group(2).split()
            found.append((f"{doc}:{line}", match.group(1), match.group(3), runnable))
    return found


RUNNABLE = [(where, lang, code) for where, lang, code, runnable in _blocks() if runnable]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def node(pg_dsn: str) -> Iterator[Node]:
    port = _free_port()
    started = start_node(
        {
            "DATABASE_URL": pg_dsn,
            "PEERSPARK_DATA_DIR": str(searchable_tmpdir()),
            "PORT": str(port),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            # the walk's refresh-reuse step waits out the grace: none here, so a second will do
            "REFRESH_REUSE_GRACE": "0",
        }
    )
    yield started
    started.stop()


def test_every_live_client_snippet_is_marked_runnable() -> None:
    unmarked = [
        where
        for where, lang, code, runnable in _blocks()
        if lang == "python" and "LiveClient(" in code and not runnable
    ]
    assert unmarked == []
    assert sorted(lang for _, lang, _ in RUNNABLE) == ["python", "python", "sh"]


@pytest.mark.parametrize("block", RUNNABLE, ids=[where for where, _, _ in RUNNABLE])
def test_a_runnable_block_runs_as_written(
    node: Node, block: tuple[str, str, str], tmp_path: Path
) -> None:
    where, lang, code = block
    env = {k: v for k, v in os.environ.items() if k != "METRICS_TOKEN"}
    env["API"] = node.url
    if lang == "python":
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, f"{where}\n{result.stdout}\n{result.stderr}"
        assert "Shall we start with problem 3?" in result.stdout
        return
    walk = code.replace("sleep 11", "sleep 1")
    for attempt in (1, 2):  # the walk may be run again: each run signs up its own students
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", walk], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        out = result.stdout
        context = f"{where}, run {attempt}\n{out}\n{result.stderr}"
        assert result.returncode == 0, context
        assert "null" not in out.split(), context  # a failed step would print null
        assert '"refresh_token_reused"' in out, context
        assert "A limit is the value a function approaches." in out, context
        lines = [line for line in out.splitlines() if line.strip()]
        assert lines[-2].startswith('"bob_'), context  # $BOB_TOKEN still good at the end
        assert lines[-1] == '"healthy"', context


def test_a_test_run_leaves_nothing_in_the_temp_folder(tmp_path: Path) -> None:
    """searchable_tmpdir() folders (an embedded PostgreSQL's is 50-180 MB) go with the run."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    (tmp_path / "test_made.py").write_text(
        textwrap.dedent(
            """
            from tests.conftest import searchable_tmpdir

            def test_makes_a_folder():
                (searchable_tmpdir() / "data").write_bytes(b"x" * 1000)
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "-c", str(ROOT / "pyproject.toml"), str(tmp_path / "test_made.py")],
        cwd=ROOT, env={**os.environ, "TMPDIR": str(temp)}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert [p.name for p in temp.iterdir() if p.name.startswith("peerspark-test-")] == []
