"""Cascade benchmark (issue 14): what viewers behind relays cost the hub, and what a relay hop adds.

    python -m bench.cascade --per-relay 10,20 --seconds 20

Two runs on a fresh demo each, media on loopback:

- **direct**: the hub (``bridgecast serve``, core 0) with one WHIP publisher
  and 2 WHEP viewers of provinces without a relay;
- **cascade**: the same hub with two province relays (``bridgecast relay
  serve``, core 1), and ``--per-relay`` viewers of each province asking the
  hub, which sends them to their relay (307).

The load (bench/load.py: a publisher and viewers that count frames without
decoding, on core 1) measures frames delivered and the latency from the
publisher's send to each viewer's arrival; the hub's CPU comes from
/proc/<pid>/stat over the measurement window. The hub's cost should not grow
with the viewers behind a relay (2 uplinks against 2 direct viewers), and the
latency difference between the runs is what a relay hop adds.
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
from typing import Any

from bench.common import RESULTS, ROOT, cpu_seconds, machine, prepare, rss_mib, serving, start_session, write_section

RELAYED = ("hai-phong", "can-tho")  # provinces served by a relay
DIRECT = ("thai-nguyen", "son-la")  # and two without one


def _relay(env: dict[str, str], data: Path, name: str, hub: str) -> tuple[subprocess.Popen[str], str]:
    """Register a relay for province ``name`` and run it on core 1."""
    from bench.common import free_port

    port = free_port()
    added = subprocess.run([sys.executable, "-m", "server", "relay", "add", name, "--unit", name, "--url",
                            f"http://127.0.0.1:{port}"], env=env, cwd=ROOT, capture_output=True, text=True,
                           check=True)
    token = added.stdout.strip().splitlines()[-1]
    relay_data = data / f"relay-{name}"
    relay_data.mkdir()
    process = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m", "server", "relay", "serve", "--hub", hub,
                                "--token", token, "--host", "127.0.0.1", "--port", str(port)],
                               env={**env, "BRIDGECAST_DATA_DIR": str(relay_data)}, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, text=True)
    return process, f"http://127.0.0.1:{port}"


def _carrying(relay_url: str, session_id: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{relay_url}/healthz", timeout=2) as response:
            health = json.loads(response.read())
    except OSError:
        return False
    return bool(health["sessions"].get(str(session_id), {}).get("carrying"))


def run_one(mode: str, per_relay: int, seconds: float, size: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bc-cascade-") as tmp:
        data = Path(tmp) / "data"
        demo = prepare(data)
        provinces = RELAYED if mode == "cascade" else DIRECT
        count = per_relay if mode == "cascade" else 1
        names = [f"{province}-{index % 20 + 1:02d}" for province in provinces for index in range(count)]
        tokens = {"speaker": demo.token("speaker"), "viewers": [demo.token(name) for name in names]}
        tokens_file = Path(tmp) / "tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        relays: list[tuple[subprocess.Popen[str], str]] = []
        with serving(demo) as (hub, url):
            start_session(url, demo)
            try:
                # The session is live: the relays take their uplinks now, the publisher comes with the load.
                if mode == "cascade":
                    relays = [_relay(demo.env, data, province, url) for province in RELAYED]
                    deadline = time.monotonic() + 60
                    while not all(_carrying(relay_url, demo.session_id) for _, relay_url in relays):
                        if time.monotonic() > deadline:
                            raise RuntimeError("the relays did not take their uplinks")
                        time.sleep(0.2)
                    time.sleep(2.5)  # a heartbeat after: the hub knows they carry the session
                return _measure(mode, hub, relays, url, demo.session_id, tokens_file, len(names), seconds, size)
            finally:
                for process, _ in relays:
                    process.terminate()
                    process.wait(timeout=20)


def _measure(mode: str, hub: subprocess.Popen[str], relays: list[tuple[subprocess.Popen[str], str]], url: str,
             session_id: int, tokens_file: Path, viewers: int, seconds: float, size: str) -> dict[str, Any]:
    load = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, "-m", "bench.load", "--url", url, "--session", str(session_id),
         "--tokens", str(tokens_file), "--viewers", str(viewers), "--seconds", str(seconds), "--size", size,
         "--source", "clip", "--bitrate", "1000000"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert load.stdout is not None
    result: dict[str, Any] = {}
    wall_start = hub_start = 0.0
    relay_start: list[float] = []
    for line in load.stdout:
        event = json.loads(line)
        if event["event"] == "measure":
            wall_start, hub_start = time.monotonic(), cpu_seconds(hub.pid)
            relay_start = [cpu_seconds(process.pid) for process, _ in relays]
        elif event["event"] == "result":
            result = event
            wall = time.monotonic() - wall_start
            result["hub_cpu_percent"] = round((cpu_seconds(hub.pid) - hub_start) / wall * 100, 1)
            result["relay_cpu_percent"] = [round((cpu_seconds(process.pid) - start) / wall * 100, 1)
                                           for (process, _), start in zip(relays, relay_start, strict=True)]
    load.wait(timeout=60)
    result.update({"mode": mode, "viewers": viewers, "hub_rss_mib": round(rss_mib(hub.pid), 1)})
    return result


def write_doc(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    direct = runs[0]
    rows = []
    for r in runs:
        latency = r["latency_ms"]
        growth = (r["hub_cpu_percent"] - direct["hub_cpu_percent"]) / direct["hub_cpu_percent"] * 100
        hop = latency["p50"] - direct["latency_ms"]["p50"]
        rows.append(f"| {r['mode']} | {r['viewers']} | {r['hub_cpu_percent']} % "
                    f"({'—' if r is direct else f'{growth:+.0f} %'}; runs {', '.join(map(str, r['hub_cpu_runs']))}) | "
                    f"{', '.join(f'{c} %' for c in r['relay_cpu_percent']) or '—'} | "
                    f"{r['received_min']} / {r['received_mean']:.0f} of {r['sent']} | "
                    f"{latency['p50']} / {latency['p95']} ms | {'—' if r is direct else f'{hop:+.1f} ms'} |")
    body = (
        f"Measured {datetime.date.today().isoformat()} on {machine()}: `python -m bench.cascade --per-relay "
        f"{args.per_relay} --seconds {args.seconds:g} --runs {args.runs}` (each line the run of median hub CPU). Hub on core 0; the two relays and the load (one publisher "
        f"looping a pre-encoded {args.size}@30 VP8 clip at 1 Mbit/s + Opus, viewers that count frames without "
        "decoding) on core 1; loopback, one demo per run. Frames are those a viewer counted in the window against "
        "those the publisher sent in it (a few more when the window catches frames in flight); latency is from "
        "the publisher's send to the viewer's arrival (one process's clock), so it includes the queueing of "
        "core 1, which carries the relays and every viewer.\n\n"
        "| run | viewers | hub CPU, % of a core (against direct) | relays' CPU | frames min / mean of sent "
        "| latency p50 / p95 | a relay hop adds (p50) |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "Bounds (issue 14): the hub within ±10 % of 2 direct viewers, delivery ≥ 99 %, a hop < 20 ms at p50. "
        "Scaled down: 2 × 40 viewers and a load that counts them do not fit beside the relays on one core here.")
    write_section("cascade", "The cascade: viewers behind relays", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-relay", default="10,20", help="viewers behind each of the two relays, one run each")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3, help="runs of each configuration (the median is shown)")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    configurations = [("direct", 1)] + [("cascade", int(n)) for n in args.per_relay.split(",")]
    runs = []
    for mode, per_relay in configurations:
        repeated = sorted((run_one(mode, per_relay, args.seconds, args.size) for _ in range(args.runs)),
                          key=lambda r: r["hub_cpu_percent"])
        median = dict(repeated[len(repeated) // 2])
        median["hub_cpu_runs"] = [r["hub_cpu_percent"] for r in repeated]
        median["p50_runs"] = sorted(r["latency_ms"]["p50"] for r in repeated)
        runs.append(median)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cascade.json").write_text(json.dumps(runs, indent=2))
    for run in runs:
        print(json.dumps({k: v for k, v in run.items() if k != "join_first_frame_s"}))
    if not args.no_doc:
        write_doc(runs, args)


if __name__ == "__main__":
    main()
