"""Fan-out benchmark: what the program feed costs the server per viewer.

    python -m bench.fanout --viewers 0,1,10 --seconds 20

For each N it starts a fresh ``bridgecast serve`` (demo data, loopback-only
ICE) pinned to core 0, and a load process (bench/load.py) pinned to core 1
with one WHIP publisher (synthetic video + Opus) and N WHEP viewers that count
frames without decoding.  Server CPU comes from the process's own accounting
(/proc/<pid>/stat utime+stime: every thread), sampled over the measurement
window only.  Results go to bench/results/ as JSON and to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    RESULTS,
    ROOT,
    cpu_seconds,
    machine,
    prepare,
    rss_mib,
    serving,
    start_session,
    write_section,
)


def run_one(viewers: int, seconds: float, size: str, naive: bool = False,
            load_args: tuple[str, ...] = ()) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bc-bench-") as tmp:
        demo = prepare(Path(tmp) / "data")
        members = demo.members
        tokens = {"speaker": demo.token("speaker"),
                  "viewers": [demo.token(members[i % len(members)]) for i in range(max(viewers, 1))]}
        tokens_file = Path(tmp) / "tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        command = ["-m", "bench.naive_server", "--port", "{port}"] if naive else None
        with serving(demo, command) as (server, url):
            start_session(url, demo)
            load = subprocess.Popen(
                ["taskset", "-c", "1", sys.executable, "-m", "bench.load", "--url", url, "--session",
                 str(demo.session_id), "--tokens", str(tokens_file), "--viewers", str(viewers), "--seconds",
                 str(seconds), "--size", size, *load_args],
                cwd=ROOT, env=demo.env, stdout=subprocess.PIPE, text=True)
            assert load.stdout is not None
            result: dict[str, object] = {}
            cpu_start = load_start = wall_start = 0.0
            load_cpu = 0.0
            for line in load.stdout:
                event = json.loads(line)
                if event["event"] == "measure":
                    cpu_start, wall_start = cpu_seconds(server.pid), time.monotonic()
                    load_start = cpu_seconds(load.pid)
                elif event["event"] == "result":
                    result = event
                    # The load's own CPU: near 100 % means it, not the server, limits delivery.
                    load_cpu = (cpu_seconds(load.pid) - load_start) / (time.monotonic() - wall_start) * 100
            cpu = (cpu_seconds(server.pid) - cpu_start) / (time.monotonic() - wall_start) * 100
            load.wait(timeout=60)
            result.update({"server": "naive" if naive else "bridgecast", "viewers": viewers,
                           "server_cpu_percent": round(cpu, 1), "load_cpu_percent": round(load_cpu, 1),
                           "server_rss_mib": round(rss_mib(server.pid), 1)})
            return result


def per_viewer(results: list[dict[str, object]]) -> float | None:
    """CPU per viewer: the least-squares slope of server CPU against viewers."""
    points = [(float(r["viewers"]), float(r["server_cpu_percent"])) for r in results]  # type: ignore[arg-type]
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


def write_doc(results: list[dict[str, object]], naive: list[dict[str, object]], seconds: float, size: str) -> None:
    rows = []
    for r in results + naive:
        baseline = next((b for b in (naive if r in naive else results) if b["viewers"] == 0), None)
        n = int(r["viewers"])  # type: ignore[arg-type]
        per = ((float(r["server_cpu_percent"]) - float(baseline["server_cpu_percent"])) / n  # type: ignore[index,arg-type]
               if baseline and n else None)
        delivered = (f"{r['received_min']} / {r['received_mean']:.0f} of {r['sent']}"
                     if n and r.get("received_mean") is not None else "—")
        joins = sorted(r.get("join_first_frame_s") or [])  # type: ignore[type-var]
        p50 = (f"{joins[len(joins) // 2] * 1000:.0f} / {joins[min(len(joins) - 1, int(len(joins) * 0.95))] * 1000:.0f} ms"
               if joins else "—")
        rows.append(f"| {r['server']} | {n} | {r['server_cpu_percent']} % | {per:.2f} % |" if per is not None
                    else f"| {r['server']} | {n} | {r['server_cpu_percent']} % | — |")
        latency = r.get("latency_ms") or {}
        lat = f"{latency['p50']} / {latency['p95']} ms" if n and latency.get("p50") is not None else "—"
        rows[-1] += (f" {delivered} | {p50} | {lat} | {r['server_rss_mib']} MiB "
                     f"| {r.get('load_cpu_percent', '—')} % |")
    table = "\n".join([
        "| server | viewers | server CPU (% of one core) | per viewer (above 0 viewers) "
        "| frames min / mean of sent | join → first frame p50 / p95 | added latency p50 / p95 "
        "| server RSS | load process CPU |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    ours, theirs = per_viewer(results), per_viewer(naive)
    if ours and theirs:
        table += (f"\n\nCPU per viewer (slope over the runs): Bridgecast {ours:.2f} % of a core, naive MediaRelay "
                  f"{theirs:.1f} %: **{theirs / ours:.0f}× less** per viewer.")
    write_section("fanout", "Program feed fan-out", (
        f"Measured {datetime.date.today().isoformat()} on {machine()}: `python -m bench.fanout "
        f"--viewers {','.join(str(r['viewers']) for r in results)} "
        f"--naive-viewers {','.join(str(r['viewers']) for r in naive)} --seconds {seconds:g} --size {size}`. "
        "Server on core 0, load (publisher + viewers that count frames without decoding) on core 1, "
        f"{size}@30 VP8 + Opus, loopback only.\n\n{table}"
    ))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="0,1,10", help="comma-separated viewer counts")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--naive-viewers", default="0,1,2,3",
                        help="viewer counts for the naive MediaRelay server ('' to skip it)")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    results = []
    for count in (int(v) for v in args.viewers.split(",")):
        result = run_one(count, args.seconds, args.size)
        print(json.dumps(result), flush=True)
        results.append(result)
    naive = []
    for count in (int(v) for v in args.naive_viewers.split(",") if v):
        result = run_one(count, args.seconds, args.size, naive=True)
        print(json.dumps(result), flush=True)
        naive.append(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"fanout-{stamp}.json").write_text(
        json.dumps({"machine": machine(), "results": results, "naive": naive}, indent=2))
    if not args.no_doc:
        write_doc(results, naive, args.seconds, args.size)


if __name__ == "__main__":
    main()
