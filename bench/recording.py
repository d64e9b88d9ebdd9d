"""Recording benchmark: what the recorder costs during a live session, next to a hall, and what follows the end.

    python -m bench.recording --seconds 30

Three runs of a fresh ``bridgecast serve`` (demo data, pinned to core 0) with
one WHIP publisher (bench/load.py, core 1) and nobody else: the session not
recorded, recorded, and not recorded with one WHEP viewer (a hall). The
recorder's cost is the second minus the first, a hall's the third minus the
first. After the recorded run the session ends: the time until its recording
is listed ``ready`` (playable), then the time until its MP4 copy is done,
give the end-to-playable time and the MP4 job's speed. Results go to
bench/results/ and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from server.auth.tokens import issue_token

from bench.common import RESULTS, ROOT, cpu_seconds, machine, prepare, serving, start_session, write_section


def _api(url: str, token: str, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {token}"})
    body = urllib.request.urlopen(request).read()
    return json.loads(body) if body else None


def run_one(record: bool, viewers: int, seconds: float, size: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bc-bench-rec-") as tmp:
        data = Path(tmp) / "data"
        demo = prepare(data)
        db = sqlite3.connect(data / "bridgecast.db")
        db.execute("UPDATE sessions SET record = ? WHERE id = ?", (1 if record else 0, demo.session_id))
        db.commit()
        db.close()
        tokens = {"speaker": demo.token("speaker"), "viewers": [demo.token(demo.members[0])]}
        tokens_file = Path(tmp) / "tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        env = {"BRIDGECAST_RECORDINGS_DIR": str(Path(tmp) / "recordings"), "BRIDGECAST_RECORDINGS_MP4_NICE": "19"}
        with serving(demo, env=env) as (server, url):
            start_session(url, demo)
            load = subprocess.Popen(
                ["taskset", "-c", "1", sys.executable, "-m", "bench.load", "--url", url, "--session",
                 str(demo.session_id), "--tokens", str(tokens_file), "--viewers", str(viewers), "--seconds",
                 str(seconds), "--size", size], cwd=ROOT, env=demo.env, stdout=subprocess.PIPE, text=True)
            assert load.stdout is not None
            cpu_start = wall_start = 0.0
            cpu = 0.0
            for line in load.stdout:
                event = json.loads(line)
                if event["event"] == "measure":
                    cpu_start, wall_start = cpu_seconds(server.pid), time.monotonic()
                elif event["event"] == "result":
                    cpu = (cpu_seconds(server.pid) - cpu_start) / (time.monotonic() - wall_start) * 100
            load.wait(timeout=60)
            result: dict[str, Any] = {"record": record, "viewers": viewers, "server_cpu_percent": round(cpu, 2)}
            if not record:
                return result
            # The end, then the first moment it can be replayed, then the MP4.
            # Not scoped to the session: the catalogue is not a live endpoint.
            speaker = issue_token(demo.secret, demo.users["speaker"], 1, 3600)
            base = f"{url}/api/v1/sessions/{demo.session_id}"
            ended = time.monotonic()
            _api(f"{base}/end", speaker, "POST")
            recording: dict[str, Any] = {}
            while not recording or recording["status"] != "ready":
                time.sleep(0.05)
                found = _api(f"{base}/recordings", speaker)["recordings"]
                recording = found[0] if found else {}
                if time.monotonic() - ended > 60:
                    raise RuntimeError(f"not ready a minute after the end: {recording}")
            result["end_to_playable_s"] = round(time.monotonic() - ended, 2)
            ready = time.monotonic()
            while recording.get("mp4_status") != "done":
                time.sleep(0.1)
                recording = _api(f"{url}/api/v1/recordings/{recording['id']}", speaker)
                if recording.get("mp4_status") == "failed" or time.monotonic() - ready > 600:
                    raise RuntimeError(f"the MP4 job did not finish: {recording}")
            result["mp4_seconds"] = round(time.monotonic() - ready, 2)
            result["duration_s"] = recording["duration_seconds"]
            result["size_mib"] = round(recording["size_bytes"] / 2**20, 2)
            result["mp4_speed"] = round(recording["duration_seconds"] / result["mp4_seconds"], 1)
            return result


def write_doc(runs: list[dict[str, Any]], seconds: float, size: str) -> None:
    base, recorded, hall = runs
    recorder = recorded["server_cpu_percent"] - base["server_cpu_percent"]
    viewer = hall["server_cpu_percent"] - base["server_cpu_percent"]
    rows = "\n".join(f"| {label} | {run['server_cpu_percent']} % |" for label, run in (
        ("publisher only, not recorded", base), ("publisher + recorder", recorded), ("publisher + one hall (WHEP)", hall)))
    write_section("recording", "Recording and the archive", (
        f"Measured {datetime.date.today().isoformat()} on {machine()}: `python -m bench.recording --seconds "
        f"{seconds:g} --size {size}`. Server on core 0 (demo data, SQLite), one WHIP publisher ({size}@30 VP8 + "
        "Opus) on core 1, loopback only.\n\n"
        "| run | server CPU (% of one core) |\n|---|---|\n" + rows + "\n\n"
        f"- **The recorder costs {recorder:.2f} % of a core per recording**, a hall {viewer:.2f} %: it is one more "
        "subscriber of the program feed (the same packets, copied to a writer thread, muxed, no codec).\n"
        f"- **End to playable: {recorded['end_to_playable_s']} s** from `POST /end` to the recording listed "
        f"`ready` ({recorded['duration_s']:.1f} s of media, {recorded['size_mib']} MiB): the part written live is "
        "the file; its SHA-256 is the only work after the end.\n"
        f"- **MP4 job: {recorded['mp4_seconds']} s for {recorded['duration_s']:.1f} s of media, "
        f"{recorded['mp4_speed']}× real time** (libx264 veryfast crf 23 + AAC 128k, faststart, niced child process), "
        "on the same machine as the server."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    runs = []
    for record, viewers in ((False, 0), (True, 0), (False, 1)):
        run = run_one(record, viewers, args.seconds, args.size)
        print(json.dumps(run), flush=True)
        runs.append(run)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"recording-{stamp}.json").write_text(json.dumps({"machine": machine(), "runs": runs}, indent=2))
    if not args.no_doc:
        write_doc(runs, args.seconds, args.size)


if __name__ == "__main__":
    main()
