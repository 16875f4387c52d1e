"""`python -m bench all` (what `make bench` runs): a short version of every websocket scenario,
the classroom against the Socket.IO and echo peers, and the REST scenarios; one summary table
at the end, and every run's result.json and plot.png under one folder.

The classroom's delivery goals are set at 20 and 50 msg/s, and one 6-second run of each
server says more about the machine's load in those seconds than about the servers (p99 is
the few slowest messages' fan-out). So the classroom runs at both rates, `--rounds` times
each, interleaved (product, Socket.IO, echo, product, ...), and the goals are judged on the
median of the rounds."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

from .context import Context, machine_load
from .report import (
    by_rate,
    comparison_lines,
    goals_table,
    repeated_ratio_lines,
    rest_table,
    write_json,
    write_rest_outputs,
    ws_table,
)
from .restrun import run_rest
from .scenarios import CLASSROOM_GOAL_RATES, SCENARIOS, preset
from .sendref import loopback_send_microseconds, reference_line
from .wire import Kind
from .wsrun import run_ws


async def main_all(args: argparse.Namespace, ctx: Context) -> int:
    from .cli import raise_open_file_limit

    soft, hard = raise_open_file_limit()
    started = time.monotonic()
    folder = ctx.run_dir("all")
    ctx.log(f"open-file limit (RLIMIT_NOFILE) raised from {soft} to {hard}")
    ctx.log(f"machine load before: {machine_load()}; {ctx.placement.describe()}")
    send_before = loopback_send_microseconds(ctx.placement.server)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}")
    peers = not args.skip_peers
    if peers and ctx.target:
        ctx.log("--target given: the Socket.IO and echo comparison needs servers started here")
        peers = False
    # (scenario, server, classroom rate and round)
    runs: list[tuple[str, Kind, tuple[float, int] | None]] = []
    for name in names:
        if name == "connect":
            # judged on the median too: one run's connects per CPU-second ranged 667-1,316
            # over three runs of one code (whatever else the node did in its second or two)
            runs += [(name, "product", None)] * max(1, args.rounds)
            continue
        if name != "classroom":
            runs.append((name, "product", None))
            continue
        kinds: list[Kind] = ["product", "socketio", "echo"] if peers else ["product"]
        for goal_rate in CLASSROOM_GOAL_RATES:
            for round_ in range(max(1, args.rounds) if peers else 1):
                runs += [(name, kind, (goal_rate, round_)) for kind in kinds]
    ws_results: list[dict[str, Any]] = []
    rest_result: dict[str, Any] | None = None
    failures: list[str] = []
    try:
        for index, (name, kind, at) in enumerate(runs):
            config = replace(preset(name, quick=True), kind=kind)
            if at is not None:
                config = replace(config, rate=at[0])
            if ctx.target and config.heartbeat:
                config = replace(config, heartbeat=25.0)  # a running node's: assume the default
            where = f"{name}-{kind}" if at is None else f"{name}-{at[0]:g}-{kind}-{index:02d}"
            try:
                result = await run_ws(ctx, config, folder / where)
            except Exception as exc:  # noqa: BLE001 (one broken run must not hide the others' figures)
                failures.append(f"{name}/{kind}: {exc}")
                ctx.log(f"{name}/{kind} failed: {exc}")
                continue
            if at is not None:
                result["round"] = at[1]  # (a failed run must not shift the pairs after it)
            ws_results.append(result)
        if not args.skip_rest:
            try:
                # 50 in flight: the hot-read goals (issue 18) are set at 50 concurrent clients
                rest_result = await run_rest(ctx, [], concurrency=50, duration=4, users=100)
                write_rest_outputs(rest_result, folder / "rest")
            except Exception as exc:  # noqa: BLE001 (one broken run must not hide the others' figures)
                failures.append(f"rest: {exc}")
                ctx.log(f"rest failed: {exc}")
    finally:
        await ctx.close()
    send_after = loopback_send_microseconds(ctx.placement.server)
    elapsed = time.monotonic() - started
    summary = {
        "command": "all",
        "seconds": round(elapsed, 1),
        "placement": ctx.placement.describe(),
        "machine_load_after": machine_load(),
        "loopback_send_us": {"before": send_before, "after": send_after},
        "websocket": [_brief(r) for r in ws_results],
        "comparison": comparisons(ws_results),
        "rest": rest_result,
        "failures": failures,
    }
    write_json(summary, folder / "summary.json")
    lines = [
        "",
        f"PeerSpark RT bench: {len(ws_results)} websocket runs"
        + (", REST" if rest_result else "")
        + f" in {elapsed:.0f}s; {ctx.placement.describe()}; "
        f"machine load now {machine_load()['load1']}",
        reference_line(send_before, send_after, ctx.placement.server),
        "",
        ws_table(ws_results) if ws_results else "(no websocket runs)",
        "",
        *comparisons(ws_results),
    ]
    if rest_result is not None:
        lines += ["", rest_table(rest_result)]
    lines += ["", goals_table(ws_results, rest_result)]
    if failures:
        lines += ["", "FAILED:", *failures]
    lines += ["", f"results: {folder}"]
    text = "\n".join(lines)
    (folder / "summary.txt").write_text(text + "\n")
    print(text)
    return 1 if failures else 0


def comparisons(ws_results: list[dict[str, Any]]) -> list[str]:
    """The product against the peers: per classroom rate, each round's ratios and, over
    several rounds, their min and median; the other scenarios have no peers."""
    lines: list[str] = []
    for rate, group in by_rate(ws_results).items():
        lines += [f"{line} ({rate:g} msg/s)" for line in comparison_lines(group)]
        lines += [f"{line} ({rate:g} msg/s)" for line in repeated_ratio_lines(group)]
    return lines


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    """A result without its timeline (the per-run result.json has everything)."""
    return {k: v for k, v in result.items() if k != "timeline"}
