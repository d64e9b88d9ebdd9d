"""Signaling capacity: thousands of websocket endpoints in one session on one server process.

    python -m bench.signaling --endpoints 2000 --storm 200 --storm-seconds 10 --changes 10

The server (``bridgecast serve``, demo data) runs on core 0; the endpoints
(bench/signaling_load.py) on core 1.  Measured: a join storm (the first
``--storm`` endpoints spread over ``--storm-seconds``: errors and join time),
then the time from the host's grant or revoke to each endpoint's receipt of
the new floor state (p50, p99, max), and the server's CPU and memory.
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

from bench.common import RESULTS, ROOT, cpu_seconds, machine, prepare, rss_mib, serving, start_session, write_section


def run(endpoints: int, storm: int, storm_seconds: float, changes: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bc-signal-") as tmp:
        demo = prepare(Path(tmp) / "data")
        tokens = {"speaker": demo.token("speaker"), "hall": demo.token("op-hai-phong"),
                  "hall_point": demo.point_of["op-hai-phong"],
                  "members": [demo.token(name) for name in demo.members]}
        tokens_file = Path(tmp) / "tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        with serving(demo) as (server, url):
            start_session(url, demo)
            cpu_start, wall_start = cpu_seconds(server.pid), time.monotonic()
            load = subprocess.run(
                ["taskset", "-c", "1", sys.executable, "-m", "bench.signaling_load", "--url", url, "--session",
                 str(demo.session_id), "--tokens", str(tokens_file), "--endpoints", str(endpoints), "--storm",
                 str(storm), "--storm-seconds", str(storm_seconds), "--changes", str(changes)],
                cwd=ROOT, env=demo.env, capture_output=True, text=True, timeout=600, check=True)
            result = json.loads(load.stdout.strip().splitlines()[-1])
            result["server_cpu_percent_avg"] = round(
                (cpu_seconds(server.pid) - cpu_start) / (time.monotonic() - wall_start) * 100, 1)
            result["server_rss_mib"] = round(rss_mib(server.pid), 1)
            return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--storm", type=int, default=200)
    parser.add_argument("--storm-seconds", type=float, default=10)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    result = run(args.endpoints, args.storm, args.storm_seconds, args.changes)
    print(json.dumps(result), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"signaling-{stamp}.json").write_text(json.dumps({"machine": machine(), "result": result}, indent=2))
    if args.no_doc:
        return
    storm = result["storm"]
    write_section("signaling", "Signaling capacity", "\n".join([
        f"Measured {datetime.date.today().isoformat()} on {machine()}: `python -m bench.signaling --endpoints "
        f"{args.endpoints} --storm {args.storm} --storm-seconds {args.storm_seconds:g} --changes {args.changes}`. "
        "Server on core 0, the endpoints (one aiohttp client process) on core 1, loopback.",
        "",
        "| endpoints joined | join storm | storm errors | storm join p50 / p99 | floor change → every endpoint "
        "p50 / p99 / max | missed | server CPU (avg over the run) | server RSS |",
        "|---|---|---|---|---|---|---|---|",
        f"| {result['connected']} of {result['endpoints']} | {storm['endpoints']} in {storm['seconds']} s "
        f"| {storm['errors']} | {storm['join_p50_ms']} / {storm['join_p99_ms']} ms "
        f"| {result['floor_p50_ms']} / {result['floor_p99_ms']} / {result['floor_max_ms']} ms "
        f"| {result['floor_missed']} | {result['server_cpu_percent_avg']} % | {result['server_rss_mib']} MiB |",
    ]))


if __name__ == "__main__":
    main()
