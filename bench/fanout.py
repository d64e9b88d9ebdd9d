"""Fan-out benchmark: what the program feed costs the server per viewer.

    python -m bench.fanout --viewers 0,1,10,50,100,150 --seconds 15 --clear-headers

For each N it starts a fresh ``bridgecast serve`` (demo data, loopback-only
ICE) pinned to core 0, and a load process (bench/load.py) pinned to core 1
with one WHIP publisher (synthetic video + Opus) and N WHEP viewers that count
frames without decoding.  The session is recorded throughout (the recorder is
one more subscriber of the program feed; the part's size is in the output).
Server CPU comes from the process's own accounting (/proc/<pid>/stat
utime+stime: every thread), sampled over the measurement window only; the
event loop's lag from the server's own /metrics histogram over that window.
Results go to bench/results/ as JSON, to docs/benchmarks.md and, as a plot of
the curve (``--before`` adds an earlier run's, from its JSON), to
docs/fanout-curve.svg.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import (
    RESULTS,
    ROOT,
    cpu_seconds,
    machine,
    prepare,
    py_spy,
    rss_mib,
    serving,
    start_session,
    write_section,
)


PLOT = ROOT / "docs" / "fanout-curve.svg"
# A path prefix: each run's server profile over the window is written there (py-spy, if installed:
# `pip install py-spy`), as collapsed stacks. The figures of such a run are not the quiet ones.
PROFILE = os.environ.get("BENCH_PROFILE")
LAG = re.compile(r'^bridgecast_event_loop_lag_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', re.M)


# Counters that tell a run apart from another: a viewer moved to the low layer starts a transcode.
COUNTERS = ("bridgecast_layer_moves_total", "bridgecast_keyframe_requests_total")


def scrape(url: str) -> tuple[dict[float, float], dict[str, float]]:
    """From the server's /metrics: its event loop lag histogram (cumulative counts by upper bound), and COUNTERS."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    counters = {name: float(value) for name, value in re.findall(r"^(bridgecast_\w+) ([0-9.e+]+)$", text, re.M)
                if name in COUNTERS}
    return {float(bound): float(count) for bound, count in LAG.findall(text)}, counters


def lag_summary(before: dict[float, float], after: dict[float, float]) -> dict[str, object]:
    """Over the window between two scrapes: how many samples, and the bound under which each share fell."""
    counts = {bound: after.get(bound, 0.0) - before.get(bound, 0.0) for bound in after}
    total = counts.get(float("inf"), 0.0)
    bounds = sorted(counts)

    def under(share: float) -> float | None:
        return next((bound for bound in bounds if total and counts[bound] >= share * total), None)

    return {"samples": int(total), "p50_under_s": under(0.5), "p99_under_s": under(0.99),
            "max_under_s": under(1.0)}


def run_one(viewers: int, seconds: float, size: str, naive: bool = False,
            load_args: tuple[str, ...] = (), tree: Path = ROOT) -> dict[str, object]:
    """One run: a fresh server (from ``tree``, this checkout by default) and a load of ``viewers``."""
    with tempfile.TemporaryDirectory(prefix="bc-bench-") as tmp:
        demo = prepare(Path(tmp) / "data", tree)
        # Recorded throughout, whatever the demo says: the recorder is part of the load.
        db = sqlite3.connect(Path(tmp) / "data" / "bridgecast.db")
        db.execute("UPDATE sessions SET record = 1 WHERE id = ?", (demo.session_id,))
        db.commit()
        db.close()
        members = demo.members
        tokens = {"speaker": demo.token("speaker"),
                  "viewers": [demo.token(members[i % len(members)]) for i in range(max(viewers, 1))]}
        tokens_file = Path(tmp) / "tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        command = ["-m", "bench.naive_server", "--port", "{port}"] if naive else None
        with serving(demo, command, tree=tree) as (server, url):
            start_session(url, demo)
            load = subprocess.Popen(
                ["taskset", "-c", "1", sys.executable, "-m", "bench.load", "--url", url, "--session",
                 str(demo.session_id), "--tokens", str(tokens_file), "--viewers", str(viewers), "--seconds",
                 str(seconds), "--size", size, *load_args],
                cwd=ROOT, env=demo.env, stdout=subprocess.PIPE, text=True)
            assert load.stdout is not None
            result: dict[str, object] = {}
            cpu_start = load_start = wall_start = 0.0
            load_cpu = cpu = 0.0
            lag_start: dict[float, float] = {}
            counters_start: dict[str, float] = {}
            for line in load.stdout:
                event = json.loads(line)
                if event["event"] == "measure":
                    cpu_start, wall_start = cpu_seconds(server.pid), time.monotonic()
                    load_start = cpu_seconds(load.pid)
                    lag_start, counters_start = ({}, {}) if naive else scrape(url)
                    if PROFILE:
                        subprocess.Popen([py_spy(), "record", "--pid", str(server.pid), "--duration",
                                          str(int(seconds)), "--rate", "250", "--nonblocking", "--format", "raw",
                                          "--output", f"{PROFILE}-{viewers}.txt"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                elif event["event"] == "result":
                    result = event
                    # The load's own CPU: near 100 % means it, not the server, limits delivery.
                    load_cpu = (cpu_seconds(load.pid) - load_start) / (time.monotonic() - wall_start) * 100
                    cpu = (cpu_seconds(server.pid) - cpu_start) / (time.monotonic() - wall_start) * 100
                    if not naive:
                        lag_end, counters_end = scrape(url)
                        result["loop_lag"] = lag_summary(lag_start, lag_end)
                        result["during_window"] = {name.removeprefix("bridgecast_"): value - counters_start.get(name, 0)
                                                   for name, value in counters_end.items()}
            load.wait(timeout=60)
            result.update({"server": "naive" if naive else "bridgecast", "viewers": viewers,
                           "server_cpu_percent": round(cpu, 1), "load_cpu_percent": round(load_cpu, 1),
                           "server_rss_mib": round(rss_mib(server.pid), 1)})
        parts = list((Path(tmp) / "data" / "recordings").rglob("part-*"))
        result["recorded_mib"] = round(sum(p.stat().st_size for p in parts) / 2**20, 2)
        return result


def per_viewer(results: list[dict[str, object]]) -> float | None:
    """CPU per viewer: the least-squares slope of server CPU against viewers."""
    points = [(float(r["viewers"]), float(r["server_cpu_percent"])) for r in results]  # type: ignore[arg-type]
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def _lag(r: dict[str, object]) -> str:
    lag = r.get("loop_lag") or {}
    if not isinstance(lag, dict) or not lag.get("samples"):
        return "—"
    p99, top = lag["p99_under_s"], lag["max_under_s"]
    return f"p99 ≤ {float(p99) * 1000:g} ms, max ≤ {float(top) * 1000:g} ms"


def _row(r: dict[str, object], baseline: dict[str, object] | None) -> str:
    n = int(r["viewers"])  # type: ignore[call-overload]
    per = ((float(r["server_cpu_percent"]) - float(baseline["server_cpu_percent"])) / n  # type: ignore[arg-type]
           if baseline and n else None)
    delivered = (f"{r['received_min']} / {float(r['received_mean']):.0f} of {r['sent']}"  # type: ignore[arg-type]
                 if n and r.get("received_mean") is not None else "—")
    joins = [float(j) for j in r.get("join_first_frame_s") or []]  # type: ignore[attr-defined]
    join = f"{_percentile(joins, 0.5) * 1000:.0f} / {_percentile(joins, 0.95) * 1000:.0f} ms" if joins else "—"
    latency = r.get("latency_ms") or {}
    lat = (f"{latency['p50']} / {latency['p95']} ms"  # type: ignore[index]
           if n and latency.get("p50") is not None else "—")  # type: ignore[attr-defined]
    return (f"| {r['server']} | {n} | {r['server_cpu_percent']} % | {f'{per:.2f} %' if per is not None else '—'} "
            f"| {delivered} | {join} | {lat} | {_lag(r)} | {r['server_rss_mib']} MiB "
            f"| {r.get('recorded_mib', '—')} MiB | {r.get('load_cpu_percent', '—')} % |")


def _by_viewers(results: list[dict[str, object]]) -> dict[int, dict[str, object]]:
    return {int(r["viewers"]): r for r in results}  # type: ignore[call-overload]


def before_after(before: list[dict[str, object]], after: list[dict[str, object]]) -> str:
    """The same viewer counts, an earlier run against this one."""
    earlier, now = _by_viewers(before), _by_viewers(after)
    rows = []
    for n in sorted(set(earlier) & set(now)):
        b, a = earlier[n], now[n]
        cells = [str(n), f"{b['server_cpu_percent']} % → {a['server_cpu_percent']} %"]
        for key in ("p95",):
            lb, la = (b.get("latency_ms") or {}).get(key), (a.get("latency_ms") or {}).get(key)  # type: ignore[attr-defined]
            cells.append(f"{lb} → {la} ms" if n and lb is not None and la is not None else "—")
        jb = [float(j) for j in b.get("join_first_frame_s") or []]  # type: ignore[attr-defined]
        ja = [float(j) for j in a.get("join_first_frame_s") or []]  # type: ignore[attr-defined]
        cells.append(f"{_percentile(jb, 0.95) * 1000:.0f} → {_percentile(ja, 0.95) * 1000:.0f} ms"
                     if jb and ja else "—")
        cells.append(f"{b.get('received_min', '—')} → {a.get('received_min', '—')} of {a.get('sent', '—')}"
                     if n else "—")
        rows.append("| " + " | ".join(cells) + " |")
    slope_b, slope_a = per_viewer(before), per_viewer(after)
    table = "\n".join(["| viewers | server CPU | added latency p95 | join p95 | frames min |",
                       "|---|---|---|---|---|", *rows])
    if slope_b and slope_a:
        table += f"\n\nCPU per viewer (slope): {slope_b:.2f} % → {slope_a:.2f} % of a core."
    return table


def plot(curves: list[tuple[str, str, list[dict[str, object]]]], path: Path) -> None:
    """Server CPU against viewers, one polyline per curve (label, colour, runs), as a small SVG."""
    width, height, left, bottom, top, right = 640, 400, 60, 50, 30, 20
    points = [(float(r["viewers"]), float(r["server_cpu_percent"]))  # type: ignore[arg-type]
              for _, _, runs in curves for r in runs]
    max_x = max(x for x, _ in points) or 1.0
    max_y = max(100.0, max(y for _, y in points))

    def sx(x: float) -> float:
        return left + x / max_x * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - y / max_y * (height - bottom - top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">'
             "Server CPU (% of one core) against viewers, 640x480@30 VP8 + Opus, recorded</text>"]
    for tick in range(0, int(max_y) + 1, 20):
        parts.append(f'<line x1="{left}" y1="{sy(tick):.1f}" x2="{width - right}" y2="{sy(tick):.1f}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{sy(tick) + 4:.1f}" text-anchor="end">{tick} %</text>')
    labelled = -100.0
    for x in sorted({x for x, _ in points}):
        if sx(x) - labelled >= 24:  # 0 and 1 viewers would overlap
            parts.append(f'<text x="{sx(x):.1f}" y="{height - bottom + 18}" text-anchor="middle">{x:g}</text>')
            labelled = sx(x)
    parts.append(f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">viewers</text>')
    parts.append(f'<line x1="{left}" y1="{sy(0):.1f}" x2="{width - right}" y2="{sy(0):.1f}" stroke="black"/>')
    parts.append(f'<line x1="{left}" y1="{sy(0):.1f}" x2="{left}" y2="{top}" stroke="black"/>')
    for index, (label, colour, runs) in enumerate(curves):
        line = sorted((float(r["viewers"]), float(r["server_cpu_percent"])) for r in runs)  # type: ignore[arg-type]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                     + " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line) + '"/>')
        parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>' for x, y in line]
        parts.append(f'<rect x="{left + 16}" y="{top + 10 + index * 18}" width="14" height="4" fill="{colour}"/>')
        parts.append(f'<text x="{left + 36}" y="{top + 16 + index * 18}">{label}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def write_doc(results: list[dict[str, object]], naive: list[dict[str, object]], seconds: float, size: str,
              command: str, before: tuple[str, list[dict[str, object]]] | None = None, note: str = "") -> None:
    baseline = _by_viewers(results).get(0)
    naive_baseline = _by_viewers(naive).get(0)
    rows = [_row(r, baseline) for r in results] + [_row(r, naive_baseline) for r in naive]
    table = "\n".join([
        "| server | viewers | server CPU (% of one core) | per viewer (above 0 viewers) "
        "| frames min / mean of sent | join → first frame p50 / p95 | added latency p50 / p95 "
        "| event loop lag | server RSS | recorded | load process CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    ours, theirs = per_viewer(results), per_viewer(naive)
    if ours:
        table += f"\n\nCPU per viewer (slope over the runs): Bridgecast {ours:.2f} % of a core"
        table += (f", naive MediaRelay {theirs:.1f} %: **{theirs / ours:.0f}× less** per viewer."
                  if theirs else ".")
    curves = [("now", "#c0392b", results)]
    if before is not None:
        label, earlier = before
        table += f"\n\nBefore and after ({label} → now, the same bench and load):\n\n{before_after(earlier, results)}"
        curves.insert(0, (label, "#7f8c8d", earlier))
    plot(curves, PLOT)
    table += f"\n\n![Server CPU against viewers]({PLOT.name})"
    write_section("fanout", "Program feed fan-out", (
        f"Measured {datetime.date.today().isoformat()} on {machine()}: `{command}`. "
        "Server on core 0, load (publisher + viewers that count frames without decoding) on core 1, "
        f"{size}@30 VP8 + Opus, loopback only, the session recorded throughout.{note}\n\n{table}"
    ))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="0,1,10", help="comma-separated viewer counts")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--naive-viewers", default="0,1,2,3",
                        help="viewer counts for the naive MediaRelay server ('' to skip it)")
    parser.add_argument("--clear-headers", action="store_true",
                        help="viewers read RTP headers without decrypting payloads (150 viewers fit on the load's core)")
    parser.add_argument("--before", metavar="JSON", help="an earlier run's results (bench/results/fanout-*.json), "
                        "compared and plotted beside this one")
    parser.add_argument("--before-tree", metavar="PATH", help="another checkout (e.g. a git worktree of an earlier "
                        "commit): its server is run too, interleaved with this one's at every viewer count")
    parser.add_argument("--before-label", default="before")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per viewer count (and per tree); the run of median server CPU is kept")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    load_args = ("--clear-headers",) if args.clear_headers else ()
    trees = [("now", ROOT)] + ([("before", Path(args.before_tree).resolve())] if args.before_tree else [])
    runs: dict[str, list[dict[str, object]]] = {label: [] for label, _ in trees}
    kept: dict[str, list[dict[str, object]]] = {label: [] for label, _ in trees}
    for count in (int(v) for v in args.viewers.split(",")):
        found: dict[str, list[dict[str, object]]] = {label: [] for label, _ in trees}
        for _ in range(args.repeat):
            for label, tree in trees:  # interleaved, so that a slow spell of the machine hits both
                result = run_one(count, args.seconds, args.size, load_args=load_args, tree=tree)
                result["tree"] = label
                print(json.dumps(result), flush=True)
                found[label].append(result)
        for label in found:
            runs[label] += found[label]
            ordered = sorted(found[label], key=lambda r: float(r["server_cpu_percent"]))  # type: ignore[arg-type]
            kept[label].append(ordered[len(ordered) // 2])
    results = kept["now"]
    naive = []
    for count in (int(v) for v in args.naive_viewers.split(",") if v):
        result = run_one(count, args.seconds, args.size, naive=True, load_args=load_args)
        print(json.dumps(result), flush=True)
        naive.append(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"fanout-{stamp}.json").write_text(
        json.dumps({"machine": machine(), "args": sys.argv[1:], "results": results, "naive": naive,
                    "before": kept.get("before"), "runs": runs}, indent=2))
    if not args.no_doc:
        before = None
        if args.before_tree:
            before = (args.before_label, kept["before"])
        elif args.before:
            before = (args.before_label, json.loads(Path(args.before).read_text())["results"])
        command = "python -m bench.fanout " + shlex.join(sys.argv[1:])
        note = ""
        if args.repeat > 1:
            note = (f" Each point is the run of median server CPU of {args.repeat}"
                    + (", interleaved with the earlier commit's runs." if args.before_tree else "."))
        write_doc(results, naive, args.seconds, args.size, command, before, note)


if __name__ == "__main__":
    main()
