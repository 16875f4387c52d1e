"""Results: the JSON file, the PNG plot, and the tables printed at the end of a run."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def plot_ws(result: dict[str, Any], path: Path) -> None:
    """Latency (p50, p99, max per second) above, throughput (deliveries and sends per
    second, and the server's CPU share) below."""
    plt = _plt()
    rows = result["timeline"]
    seconds = [r["second"] + 1 for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    cfg = result["config"]
    fig.suptitle(
        f"{result['scenario']} against {result['server_kind']}: {cfg['clients']:,} clients, "
        f"{cfg['rooms']} rooms, {cfg['senders']} senders, {cfg['rate']:g} msg/s\n"
        f"{result['description']}",
        fontsize=10,
    )
    for key, style in (("p50", "-"), ("p99", "--"), ("max", ":")):
        values = [_ms(r[key]) for r in rows]
        if any(v is not None for v in values):
            top.plot(seconds, values, style, label=key, marker=".")
    top.set_ylabel("send → receive latency (ms)")
    if any(r["max"] for r in rows):
        top.set_yscale("log")
    top.grid(True, which="both", alpha=0.3)
    top.legend(loc="upper left")
    bottom.plot(seconds, [r["deliveries"] for r in rows], label="deliveries/s", marker=".")
    bottom.plot(seconds, [r["sent"] for r in rows], label="messages sent/s", marker=".")
    bottom.set_ylabel("per second")
    bottom.set_xlabel("seconds since sending started")
    bottom.grid(True, alpha=0.3)
    bottom.legend(loc="upper left")
    cpu = [r.get("server_cpu") for r in rows]
    if any(c is not None for c in cpu):
        twin = bottom.twinx()
        twin.plot(
            seconds,
            [None if c is None else c * 100 for c in cpu],
            color="grey",
            alpha=0.6,
            label="server CPU %",
        )
        twin.set_ylabel("server CPU (% of one core)")
        twin.set_ylim(0, 110)
        twin.legend(loc="upper right")
    drop = result["config"].get("drop_at")
    if drop is not None:
        for ax in (top, bottom):
            ax.axvline(drop, color="red", alpha=0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_rest(result: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7))
    fig.suptitle("REST endpoints under concurrency", fontsize=11)
    ran = [s for s in result["scenarios"] if s.get("timeline")]
    for s in ran:
        rows = s["timeline"]
        seconds = [r["second"] + 1 for r in rows]
        top.plot(seconds, [_ms(r["p99"]) for r in rows], marker=".", label=f"{s['name']} p99")
        bottom.plot(seconds, [r["requests"] for r in rows], marker=".", label=s["name"])
    top.set_ylabel("latency p99 (ms)")
    top.grid(True, alpha=0.3)
    bottom.set_ylabel("requests/s")
    bottom.set_xlabel("seconds into the scenario")
    bottom.grid(True, alpha=0.3)
    if ran:
        top.legend(fontsize=8)
        bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_ws_outputs(result: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(result, folder / "result.json")
    plot_ws(result, folder / "plot.png")


def write_rest_outputs(result: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(result, folder / "result.json")
    plot_rest(result, folder / "plot.png")


# --- tables --------------------------------------------------------------------------------------


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 1000:
        return f"{ms:.1f}"
    return f"{ms:,.0f}"


def fmt_int(v: float | int | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A plain-text table; the first `left` columns and the last are left-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out.extend(
        "  ".join(
            (c.ljust(w) if i < left or i == len(widths) - 1 else c.rjust(w))
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    )
    return "\n".join(out)


WS_HEADERS = (
    "run",
    "clients",
    "msg/s",
    "deliveries/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "lost",
    "dup",
    "errors",
    "srv CPU s",
    "deliv/CPU-s",
    "KiB/conn",
    "gen CPU",
    "extra",
)


def generator_share(r: dict[str, Any]) -> float | None:
    """The load generator's CPU share of its cores while sending (or over the run)."""
    g = r.get("generator") or {}
    share = g.get("sending_cpu_share", g.get("cpu_share_of_its_cores"))
    return None if share is None else float(share)


def generator_bound(r: dict[str, Any]) -> bool:
    return bool((r.get("generator") or {}).get("bound"))


def fmt_generator(r: dict[str, Any]) -> str:
    """`43%`, or `93%!` when the run was generator-bound (its figures flatter the server);
    ` C` after it when the listeners received in the C receiver (bench/lean)."""
    share = generator_share(r)
    if share is None:
        return "-"
    c = " C" if (r.get("generator") or {}).get("receiver") == "c" else ""
    return f"{share * 100:.0f}%" + ("!" if generator_bound(r) else "") + c


def ws_row(r: dict[str, Any]) -> list[str]:
    d, s, c = r["delivery"], r["server"], r["connect"]
    lat = d["latency"]
    extra = ""
    if "burst" in r:
        b = r["burst"]
        extra = (
            f"back {b['back']}/{b['dropped']} in max {fmt_ms(b['resume']['max'])} ms"
            if b["resume"]["max"] is not None
            else f"back 0/{b['dropped']}"
        )
    elif r["scenario"] == "connect":
        per = s.get("connects_per_cpu_second")
        extra = (
            f"{per:,} connects/CPU-s (handshake+token+join; goal >= 1,000)"
            if per
            else "connects/CPU-s -"
        )
    elif "idle" in r:
        i = r["idle"]
        share = i.get("server_cpu_share")
        per = i.get("cpu_microseconds_per_ping")
        extra = (f"idle CPU {share * 100:.1f}%" if share is not None else "idle CPU -") + (
            f", {per} us/ping" if per is not None else ""
        )
    ack = d["ack_latency"].get("p99")
    if ack is not None and r["server_kind"] != "echo":
        extra = (extra + "; " if extra else "") + f"ack p99 {fmt_ms(ack)} ms"
    errors = sum(d["errors"].values()) + c["failed"]
    rate = r["config"]["rate"]
    nodes = r["config"].get("nodes", 1)
    behind = f" {nodes} node{'s' if nodes > 1 else ''}+nginx" if r["config"].get("balancer") else ""
    return [
        f"{r['scenario']}/{_run_of(r)}{behind}",
        f"{c['connected']:,}",
        f"{rate:g}",
        fmt_int(d["deliveries_per_second"]),
        fmt_ms(lat["p50"]),
        fmt_ms(lat["p90"]),
        fmt_ms(lat["p99"]),
        fmt_ms(lat["max"]),
        fmt_int(d["missing"]),
        fmt_int(d["duplicates"]),
        fmt_int(errors),
        "-" if s.get("cpu_seconds") is None else f"{s['cpu_seconds']:.2f}",
        fmt_int(s.get("deliveries_per_cpu_second")),
        "-"
        if s.get("memory_per_connection_kib") is None
        else f"{s['memory_per_connection_kib']:.1f}",
        fmt_generator(r),
        extra,
    ]


def run_name(kind: str, client: str) -> str:
    """What a run measured: the server, and for the product which of its sockets
    (`product` is /ws, `product-sio` the spec's Socket.IO events on /socket.io/)."""
    return "product-sio" if kind == "product" and client == "socketio" else kind


def _run_of(r: dict[str, Any]) -> str:
    return str(r.get("run") or r["server_kind"])


def ws_table(results: Sequence[dict[str, Any]]) -> str:
    text = table(WS_HEADERS, [ws_row(r) for r in results])
    if any(generator_bound(r) for r in results):
        text += (
            "\n(gen CPU: the load generator's share of its cores while sending; `!` = above "
            "70%: generator-bound, its receivers fell behind and the server's figures flatter "
            "it; no ratios are printed from such a run)"
        )
    return text


def nodes_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """Several nodes behind nginx against one node under the same load: the servers' CPU per
    delivery, all nodes together and each node, and the goal (at most 1.2 times one node's)."""
    single = {
        r["scenario"]: r
        for r in results
        if r["server_kind"] == "product"
        and r["config"].get("nodes", 1) == 1
        and r["config"].get("balancer")
    }
    lines: list[str] = []
    for r in results:
        n = r["config"].get("nodes", 1)
        one = single.get(r["scenario"])
        if n <= 1 or one is None:
            continue
        base = one["server"].get("cpu_us_per_delivery")
        many = r["server"].get("cpu_us_per_delivery")
        if not base or not many:
            lines.append(f"{r['scenario']}: {n} nodes vs one: no CPU figures")
            continue
        ratio = many / base
        lines.append(
            f"{r['scenario']}: {n} nodes vs one node, both behind nginx: server CPU per delivery "
            f"{many:.2f} us vs {base:.2f} us = x{ratio:.2f} "
            f"({'within' if ratio <= 1.2 else 'over'} the x1.2 goal); nginx "
            f"{r['server'].get('balancer_cpu_seconds', 0):.2f} CPU-s apart"
        )
        # per node, the frames its own counter saw (messages, and any presence or events),
        # against the one node's by the same counter
        alone = (one["server"].get("nodes") or [{}])[0].get("cpu_us_per_delivery")
        for node in r["server"].get("nodes", ()):
            per = node["cpu_us_per_delivery"]
            against = f" = x{per / alone:.2f} the one node's" if per and alone else ""
            lines.append(
                f"  {node['node']}: {node['deliveries']:,} frames written, "
                f"{node['cpu_seconds']:.2f} CPU-s, "
                + (f"{per:.2f} us each{against}" if per else "none")
            )
    return lines


def comparison_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """The product against each peer in the same scenario: ratios of the headline figures."""
    lines: list[str] = []
    by_scenario: dict[str, dict[str, dict[str, Any]]] = {}
    for r in results:
        by_scenario.setdefault(r["scenario"], {})[_run_of(r)] = r
    pairs = (
        ("product", "socketio"),
        ("product", "echo"),
        ("product-sio", "product"),
        ("product-sio", "socketio"),
    )
    for scenario, kinds in by_scenario.items():
        for mine, peer in pairs:
            product, other = kinds.get(mine), kinds.get(peer)
            if product is None or other is None:
                continue
            pd, od = product["delivery"], other["delivery"]
            parts = [f"{scenario}: {mine} vs {peer}:"]
            bound = [r for r in (product, other) if generator_bound(r)]
            if bound:
                shares = ", ".join(f"{_run_of(r)} {fmt_generator(r)}" for r in (product, other))
                parts.append(f"no ratios: generator-bound (generator CPU {shares})")
                lines.append("  ".join(parts))
                continue
            if od["deliveries_per_second"]:
                ratio = pd["deliveries_per_second"] / od["deliveries_per_second"]
                parts.append(f"deliveries/s x{ratio:.2f}")
            p99a, p99b = pd["latency"]["p99"], od["latency"]["p99"]
            if p99a and p99b:
                parts.append(
                    f"p99 latency x{p99a / p99b:.2f} ({fmt_ms(p99a)} vs {fmt_ms(p99b)} ms)"
                )
            ea = product["server"].get("deliveries_per_cpu_second")
            eb = other["server"].get("deliveries_per_cpu_second")
            if ea and eb:
                parts.append(f"deliveries per CPU-second x{ea / eb:.2f} ({ea:,} vs {eb:,})")
            ma = product["server"].get("memory_per_connection_kib")
            mb = other["server"].get("memory_per_connection_kib")
            if ma and mb:
                parts.append(f"memory/conn x{ma / mb:.2f}")
            lines.append("  ".join(parts))
    return lines


REST_HEADERS = (
    "scenario",
    "endpoint",
    "req/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "failed",
    "srv CPU s",
    "req/CPU-s",
    "note",
)


def rest_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for s in result["scenarios"]:
        if s.get("skipped"):
            rows.append([s["name"], s["endpoint"], *["-"] * 8, s["skipped"]])
            continue
        lat = s["latency"]
        rows.append(
            [
                s["name"],
                s["endpoint"],
                fmt_int(s["requests_per_second"]),
                fmt_ms(lat["p50"]),
                fmt_ms(lat["p90"]),
                fmt_ms(lat["p99"]),
                fmt_ms(lat["max"]),
                fmt_int(s["failures"]),
                "-" if s.get("server_cpu_seconds") is None else f"{s['server_cpu_seconds']:.2f}",
                fmt_int(s.get("requests_per_cpu_second")),
                s.get("note", ""),
            ]
        )
    return rows


def rest_table(result: dict[str, Any]) -> str:
    return table(REST_HEADERS, rest_rows(result), left=2)


_PAIRS = (
    ("product", "socketio"),
    ("product", "echo"),
    ("product-sio", "product"),
    ("product-sio", "socketio"),
)


def pair_ratios(mine: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    """The headline ratios of one run against another (empty when either is generator-bound:
    such a run's figures say more about the generator than about the server)."""
    if generator_bound(mine) or generator_bound(other):
        return {}
    ratios: dict[str, float] = {}
    a, b = (
        mine["server"].get("deliveries_per_cpu_second"),
        other["server"].get("deliveries_per_cpu_second"),
    )
    if a and b:
        ratios["deliveries per CPU-second"] = a / b
    p99a, p99b = mine["delivery"]["latency"]["p99"], other["delivery"]["latency"]["p99"]
    if p99a and p99b:
        ratios["p99 latency"] = p99a / p99b
    da, db = mine["delivery"]["deliveries_per_second"], other["delivery"]["deliveries_per_second"]
    if da and db:
        ratios["deliveries/s"] = da / db
    return ratios


def repeated_ratio_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """With `--compare --repeat N`: the runs of each kind in the order they ran (product,
    peers, product, peers, ...), round k of one paired with round k of the other; per ratio,
    min and median over the rounds that were not generator-bound."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        runs.setdefault((r["scenario"], _run_of(r)), []).append(r)
    lines: list[str] = []
    for (scenario, mine), mine_runs in runs.items():
        for first, peer in _PAIRS:
            peer_runs = runs.get((scenario, peer))
            if first != mine or not peer_runs:
                continue
            paired = rounds(mine_runs, peer_runs)
            if len(paired) < 2:
                continue
            per: dict[str, list[float]] = {}
            bound = 0
            for a, b in paired:
                ratios = pair_ratios(a, b)
                if not ratios:
                    bound += 1
                for name, value in ratios.items():
                    per.setdefault(name, []).append(value)
            parts = [f"{scenario}: {mine} vs {peer} over {len(paired)} interleaved rounds:"]
            for name, values in per.items():
                parts.append(
                    f"{name} min x{min(values):.2f} median x{statistics.median(values):.2f}"
                )
            if bound:
                parts.append(f"({bound} generator-bound round(s) left out)")
            shares = [s for r in mine_runs + peer_runs if (s := generator_share(r)) is not None]
            if shares:
                parts.append(f"generator CPU {min(shares) * 100:.0f}-{max(shares) * 100:.0f}%")
            lines.append("  ".join(parts))
    return lines


# Issue 18's goals, as `python -m bench all` measures them (REST: today's figures from the
# issue, 260 req/s for the feed and 113 for resource search at 50 clients, doubled).
REST_GOALS = {"feed": 520, "resources-search": 226}
REST_P99_GOAL = 0.100
IDLE_KIB_GOAL = 14.0
CONNECTS_GOAL = 1000
DELIVERIES_GOAL = 110_000
SOCKETIO_RATIO_GOAL = 1.8
GENERATOR_BOUND = 0.70  # the generator's share of its core above which a run gives no verdict
SERVER_SATURATED = 0.95  # a REST server's share of its core at which it was the bottleneck
BEHIND_P50 = 0.050  # seconds: a classroom p50 above this is a server that fell behind


def goal_rows(
    ws_results: Sequence[dict[str, Any]], rest_result: dict[str, Any] | None
) -> list[list[str]]:
    """goal, measured, target, met?, generator CPU share beside it."""
    rows: list[list[str]] = []

    def add(goal: str, measured: str, target: str, met: bool | None, gen: str) -> None:
        rows.append([goal, measured, target, "-" if met is None else ("yes" if met else "NO"), gen])

    shares = [(r, generator_share(r)) for r in ws_results]
    worst = max((s for _, s in shares if s is not None), default=None)
    add(
        "generator never the bottleneck (ws runs)",
        "-" if worst is None else f"max {worst * 100:.0f}% of its cores",
        "<= 70%",
        None if worst is None else worst <= GENERATOR_BOUND,
        "",
    )
    by = {(r["scenario"], _run_of(r)): r for r in ws_results}
    idle = by.get(("idle", "product"))
    if idle is not None:
        kib = idle["server"].get("memory_per_connection_kib")
        add(
            "idle memory per joined socket",
            "-" if kib is None else f"{kib:.1f} KiB",
            f"<= {IDLE_KIB_GOAL:g} KiB",
            None if kib is None else kib <= IDLE_KIB_GOAL,
            fmt_generator(idle),
        )
    connects = [r for r in ws_results if r["scenario"] == "connect" and _run_of(r) == "product"]
    figures = sorted(
        per for r in connects if (per := r["server"].get("connects_per_cpu_second")) is not None
    )
    if connects:
        middle = statistics.median(figures) if figures else None
        measured = "-" if middle is None else f"{middle:,.0f}"
        if len(figures) > 1:
            measured += f" median of {len(figures)} ({figures[0]:,}-{figures[-1]:,})"
        add(
            "handshake+token+join per server CPU-s",
            measured,
            f">= {CONNECTS_GOAL:,}",
            None if middle is None else middle >= CONNECTS_GOAL,
            " ".join(fmt_generator(r) for r in connects),
        )
    classroom = [r for r in ws_results if r["scenario"] == "classroom"]
    for rate, group in by_rate(classroom).items():
        _classroom_goals(add, rate, group)
    if rest_result is not None:
        for s in rest_result["scenarios"]:
            goal = REST_GOALS.get(s["name"])
            if goal is None or s.get("skipped"):
                continue
            p99 = s["latency"]["p99"]
            rps = s["requests_per_second"]
            share = s.get("generator_cpu_share")
            # A busy generator sends and reads late: no verdict from it, as for websockets,
            # unless the server used its whole core meanwhile. Then the server was the
            # bottleneck (what it answered is what it can), and the generator's lateness
            # only adds to the latency measured: the run is judged, met or not.
            server_cpu, duration = s.get("server_cpu_seconds"), s.get("duration")
            saturated = bool(server_cpu and duration and server_cpu / duration >= SERVER_SATURATED)
            bound = share is not None and share > GENERATOR_BOUND and not saturated
            met = p99 is not None and p99 < REST_P99_GOAL and rps >= goal
            hits = s.get("cache_hit_rate")
            busy = share is not None and share > GENERATOR_BOUND
            add(
                f"REST {s['name']} at {s['concurrency']} in flight",
                f"{rps:,} req/s, p99 {fmt_ms(p99)} ms"
                + ("" if hits is None else f", cache hits {hits * 100:.0f}%")
                + (" (generator-bound: no verdict)" if bound else "")
                + (" (server-bound: its core was all used)" if busy and saturated else ""),
                f">= {goal} req/s, p99 < 100 ms",
                None if bound else met,
                "-"
                if s.get("generator_cpu_share") is None
                else (f"{s['generator_cpu_share'] * 100:.0f}%"),
            )
    return rows


def by_rate(results: Sequence[dict[str, Any]]) -> dict[float, list[dict[str, Any]]]:
    """Runs grouped by their message rate, in the order they ran."""
    groups: dict[float, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(float(r["config"]["rate"]), []).append(r)
    return groups


def rounds(
    mine: Sequence[dict[str, Any]], theirs: Sequence[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Round k of one kind with round k of the other: by the round each run was numbered with
    (`bench all`: a failed run must not shift the pairs after it), else in the order they ran."""
    if all("round" in r for r in (*mine, *theirs)):
        by_round = {r["round"]: r for r in theirs}
        return [(r, by_round[r["round"]]) for r in mine if r["round"] in by_round]
    return list(zip(mine, theirs, strict=False))


def _spread(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    """`x1.62` for one round; `x1.62 median of 3 (x1.55-x1.70)` for several."""
    if len(values) == 1:
        return fmt(values[0])
    median = statistics.median(values)
    return f"{fmt(median)} median of {len(values)} ({fmt(min(values))}-{fmt(max(values))})"


def _behind(r: dict[str, Any]) -> bool:
    # A server that fell behind (starved of its CPU, or saturated) writes several frames per
    # syscall and looks cheaper per delivery, as behind a slow generator: no verdict from it.
    p50 = r["delivery"]["latency"]["p50"]
    return p50 is not None and p50 > BEHIND_P50


def _classroom_goals(
    add: Callable[[str, str, str, bool | None, str], None],
    rate: float,
    runs: Sequence[dict[str, Any]],
) -> None:
    """The delivery goals at one rate, judged on the median of the rounds that ran (round k
    of the product against round k of Socket.IO); rounds whose generator was the bottleneck,
    or whose product server fell behind, give no verdict and are left out."""
    mine = [r for r in runs if _run_of(r) == "product"]
    sio = [r for r in runs if _run_of(r) == "socketio"]
    if not mine:
        return
    gens = " ".join(fmt_generator(r) for r in mine)
    sound = [r for r in mine if not generator_bound(r) and not _behind(r)]
    left_out = len(mine) - len(sound)
    note = f" ({left_out} round(s) generator-bound or behind: left out)" if left_out else ""
    per = [
        float(r["server"]["deliveries_per_cpu_second"])
        for r in sound
        if r["server"].get("deliveries_per_cpu_second")
    ]
    add(
        f"classroom deliveries per CPU-s ({rate:g} msg/s)",
        ("-" if not per else _spread(per, lambda v: f"{v:,.0f}")) + note,
        f">= {DELIVERIES_GOAL:,}",
        None if not per else statistics.median(per) >= DELIVERIES_GOAL,
        gens,
    )
    if not sio:
        return
    pairs = rounds(mine, sio)
    # A product that fell behind gives no verdict on its CPU per delivery, but its latency is
    # what its users saw: it counts against the p99 goal.
    cheap = [pair_ratios(a, b) for a, b in pairs if not _behind(a)]
    fast = [pair_ratios(a, b) for a, b in pairs]
    pair_gens = " ".join(f"{fmt_generator(a)}/{fmt_generator(b)}" for a, b in pairs)
    # (ratio, goal, target, whether the median must be at least the target or at most, rounds)
    for name, goal, target, at_least, ratios in (
        ("deliveries per CPU-second", "vs Socket.IO per CPU-s", SOCKETIO_RATIO_GOAL, True, cheap),
        ("p99 latency", "p99 vs Socket.IO", 1.0, False, fast),
    ):
        values = [r[name] for r in ratios if name in r]
        median = statistics.median(values) if values else None
        add(
            f"classroom {goal} ({rate:g} msg/s)",
            "no sound round" if not values else _spread(values, lambda v: f"x{v:.2f}"),
            f"{'>=' if at_least else '<='} x{target:.2f}",
            None if median is None else (median >= target if at_least else median <= target),
            pair_gens,
        )


def goals_table(ws_results: Sequence[dict[str, Any]], rest_result: dict[str, Any] | None) -> str:
    rows = goal_rows(ws_results, rest_result)
    if not rows:
        return "(no goals measured)"
    return table(("goal (issue 18)", "measured", "target", "met", "gen CPU"), rows, left=1)
