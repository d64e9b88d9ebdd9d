"""Layers that do not punish healthy halls: real browsers on a healthy link and on constrained ones.

    python -m bench.layer_policy --runs 20 --seconds 20 --constrained-runs 3

A fresh ``bridgecast serve`` (demo data) per browser and policy; the speaker
publishes through WHIP from this process: a 640x480@30 moving pattern
encoded as VP8 at a constant 1 Mbit/s, with Opus. Each run starts a fresh
headless browser (Debian's Chromium, Firefox ESR) as a WHEP viewer and
watches it for ``--seconds`` from its first picture. A run counts as
"moved down" if the server logged a move to the low layer for it, or the
browser ever showed a picture narrower than 640.

Chromium watches over loopback. Firefox ESR gathers only the machine's
default-route address (never 127.0.0.1, whatever its prefs), so it watches
from a network namespace of its own over an unshaped veth pair: a link as
clean as loopback, that never touches another interface.

Constrained runs (``--constrained-runs``, new policy only) put each browser
in a namespace, let it watch 8 s, then limit the link to 400 kbit/s (tc tbf)
or drop 15 % of its packets (iptables statistic), keep that 10 s past the
move down, lift it, and time the move down (server's decision and the
browser's picture) and the way back to 640x480.

``--policy before`` runs the server with the policy of before issue 8
(bench/before_policy.py) for comparison. Results: bench/results/*.json and
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import re
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection

from bench.common import RESULTS, machine, prepare, serving, start_session, write_section
from bench.load import ToneTrack, negotiate
from tests.media.browsers import Namespace, ViewerPage, browser, namespace
from tests.media.clients import PatternTrack, steady_vp8

FULL_WIDTH = 640
DOWN, UP = "layer policy: to the low layer", "layer policy: to the high layer"


class ServerLog:
    """The server's log as it grows: when each line was first seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[tuple[float, str]] = []
        self._offset = 0

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open() as handle:
            handle.seek(self._offset)
            text = handle.read()
        complete = text[: text.rfind("\n") + 1]
        self._offset += len(complete.encode())
        now = time.monotonic()
        self.lines += [(now, line) for line in complete.splitlines()]

    def since(self, moment: float, needle: str) -> list[tuple[float, str]]:
        self.poll()
        return [(at, line) for at, line in self.lines if at >= moment and needle in line]


def whep(url: str, session_id: int, token: str):  # type: ignore[no-untyped-def]
    async def answer(offer: str) -> str:
        async with aiohttp.ClientSession() as http, http.post(
                f"{url}/whep/sessions/{session_id}", data=offer,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}) as reply:
            if reply.status != 201:
                raise RuntimeError(f"WHEP {reply.status}: {await reply.text()}")
            return await reply.text()
    return answer


async def until(condition, timeout: float, step: float = 0.05) -> float | None:  # type: ignore[no-untyped-def]
    """When ``condition()`` first held (monotonic), or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        await asyncio.sleep(step)
    return None


@contextlib.asynccontextmanager
async def viewer(name: str, answer, ns: Namespace | None):  # type: ignore[no-untyped-def]
    page = ViewerPage(answer, host=ns.host_address if ns else "127.0.0.1")
    async with page.serving(), browser(name, page.url, netns=ns.name if ns else None,
                                       interface=ns.interface if ns else "lo", loopback=ns is None):
        yield page


def narrow(page: ViewerPage, since: float = 0.0) -> bool:
    return any(s.get("width") and s["width"] < FULL_WIDTH for s in page.samples if s["at"] >= since)


async def healthy_run(name: str, answer, ns: Namespace | None, log: ServerLog, seconds: float,  # type: ignore[no-untyped-def]
                      start_timeout: float = 20) -> dict[str, Any]:
    """Watch a fresh viewer for ``seconds`` from its first picture (which must come within ``start_timeout``)."""
    started = time.monotonic()
    async with viewer(name, answer, ns) as page:
        first = await until(lambda: page.last_picture() is not None, start_timeout)
        if first is None:
            return {"error": f"no picture: {page.errors}"}
        # Poll the log all along: a line's time is when it was first seen.
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            log.poll()
            await asyncio.sleep(0.1)
    moves = log.since(started, DOWN)
    narrow_at = next((s["at"] for s in page.samples if s.get("width") and s["width"] < FULL_WIDTH), None)
    return {"first_picture_s": round(first - started, 2), "moved_down": bool(moves) or narrow_at is not None,
            "moved_after_s": round((moves[0][0] if moves else narrow_at) - first, 2)  # type: ignore[operator]
            if moves or narrow_at else None,
            "reasons": [line.split("layer policy: ", 1)[-1] for _, line in moves],
            "pictures": sorted({f"{w}x{h}" for w, h in page.pictures()})}


async def constrained_run(name: str, answer, ns: Namespace, log: ServerLog, kind: str,  # type: ignore[no-untyped-def]
                          settle: float = 8, hold: float = 10, start_timeout: float = 20) -> dict[str, Any]:
    """Watch ``settle`` s, constrain the link (``kind``: "rate" or "loss") until ``hold`` s past the move down, lift it."""
    started = time.monotonic()
    async with viewer(name, answer, ns) as page:
        first = await until(lambda: page.last_picture() == (640, 480), start_timeout)
        if first is None:
            return {"error": f"no picture: {page.errors}"}
        await asyncio.sleep(settle)
        moved_early = narrow(page)
        shaped = time.monotonic()
        ns.shape(rate_kbit=400) if kind == "rate" else ns.shape(loss_percent=15)
        try:
            decided = await until(lambda: bool(log.since(shaped, DOWN)), 15)
            shown = await until(lambda: narrow(page, shaped), 15)
            await asyncio.sleep(hold)
            flapped = bool(log.since((decided or shaped) + 0.1, UP))
        finally:
            ns.clear()
        lifted = time.monotonic()
        back = await until(lambda: bool(log.since(lifted, UP)), 30)
        back_shown = await until(lambda: page.last_picture() == (640, 480) and not narrow(page, time.monotonic() - 1),
                                 30)
        # Every move of this run, with its time relative to the constraint.
        reasons = [f"{at - shaped:+.1f} s {line.split('layer policy: ', 1)[-1]}"
                   for at, line in log.since(started, "layer policy")]
    elapsed = lambda moment, since: None if moment is None else round(moment - since, 2)  # noqa: E731
    return {"constraint": kind, "moved_before_constraint": moved_early,
            "down_decided_s": elapsed(decided, shaped), "down_shown_s": elapsed(shown, shaped),
            "went_up_while_constrained": flapped,
            "up_decided_s": elapsed(back, lifted), "up_shown_s": elapsed(back_shown, lifted), "reasons": reasons}


@contextlib.contextmanager
def maybe_namespace(wanted: bool) -> Iterator[Namespace | None]:
    if not wanted:
        yield None
        return
    with namespace() as ns:
        yield ns


async def run_browser(name: str, policy: str, runs: int, seconds: float, constrained: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bc-layers-") as tmp, \
            maybe_namespace(name == "firefox" or constrained > 0) as ns:
        demo = prepare(Path(tmp) / "data")
        addresses = ["127.0.0.1"] + ([ns.host_address, ns.address] if ns else [])
        command = ["-m", "bench.before_policy", "serve"] if policy == "before" else None
        log = ServerLog(Path(tmp) / "server.log")
        with serving(demo, command, env={"BRIDGECAST_ICE_ADDRESSES": ",".join(addresses)}, log=log.path) as (_, url):
            start_session(url, demo)
            publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            publisher.addTransceiver(PatternTrack(640, 480), direction="sendonly")
            publisher.addTransceiver(ToneTrack(), direction="sendonly")
            async with aiohttp.ClientSession() as http:
                await negotiate(http, f"{url}/whip/sessions/{demo.session_id}", demo.token("speaker"), publisher)
            await asyncio.sleep(3)  # on air
            members = demo.members
            healthy_ns = ns if name == "firefox" else None
            results: dict[str, Any] = {"browser": name, "policy": policy, "healthy": [], "constrained": []}
            try:
                for index in range(runs):
                    answer = whep(url, demo.session_id, demo.token(members[index % len(members)]))
                    result = await healthy_run(name, answer, healthy_ns, log, seconds)
                    print(json.dumps({"browser": name, "policy": policy, "run": index, **result}), flush=True)
                    results["healthy"].append(result)
                for index in range(constrained):
                    for kind in ("rate", "loss"):
                        assert ns is not None
                        answer = whep(url, demo.session_id, demo.token(members[(runs + index) % len(members)]))
                        result = await constrained_run(name, answer, ns, log, kind)
                        print(json.dumps({"browser": name, "policy": policy, **result}), flush=True)
                        results["constrained"].append(result)
            finally:
                await publisher.close()
            return results


def _figures(values: list[float | None]) -> str:
    """Seconds as "min–max" (and the median when there are more than two)."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return "—"
    missing = len(values) - len(known)
    text = f"{known[0]:.1f}–{known[-1]:.1f} s" if known[0] != known[-1] else f"{known[0]:.1f} s"
    if len(known) > 2:
        text += f" (median {known[len(known) // 2]:.1f} s)"
    return text + (f", {missing} never" if missing else "")


def write_doc(all_results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    rows = ["| browser | policy | runs | moved down (healthy link) | when, after the first picture | why "
            "| first picture after launch (median) |", "|---|---|---|---|---|---|---|"]
    for r in all_results:
        healthy = [h for h in r["healthy"] if "error" not in h]
        errors = len(r["healthy"]) - len(healthy)
        moved = sum(1 for h in healthy if h["moved_down"])
        firsts = sorted(h["first_picture_s"] for h in healthy)
        # "to the low layer (starved, before issue 8)" / "(loss 12% over 2 s)" / "(estimate ...)"
        reasons = Counter(re.search(r"\((\w+)", reason).group(1)  # type: ignore[union-attr]
                          for h in healthy for reason in h["reasons"][:1])
        why = ", ".join(f"{word} ({count})" for word, count in sorted(reasons.items())) or "—"
        when = _figures([h["moved_after_s"] for h in healthy if h["moved_down"]])
        rows.append(f"| {r['browser']} | {r['policy']} | {len(r['healthy'])}"
                    f"{f' ({errors} without a picture in 20 s)' if errors else ''} | **{moved} of {len(healthy)}** "
                    f"| {when} | {why} | {firsts[len(firsts) // 2]:.1f} s |" if firsts else
                    f"| {r['browser']} | {r['policy']} | {len(r['healthy'])} | — | — | — | — |")
    body = [f"Measured {datetime.date.today().isoformat()} on {machine()}: `python -m bench.layer_policy "
            f"--runs {args.runs} --seconds {args.seconds:g} --constrained-runs {args.constrained_runs}`. "
            "Server (`bridgecast serve`, core 0) with a WHIP publisher of 640x480@30 VP8 at a constant 1 Mbit/s; "
            "each run a fresh headless browser as a WHEP viewer, watched for "
            f"{args.seconds:g} s from its first picture. Chromium on loopback; Firefox ESR over an unshaped veth "
            "into its own network namespace (it never gathers 127.0.0.1). \"before\" is the policy of before "
            "issue 8 (bench/before_policy.py).", "", *rows]
    constrained = [(r["browser"], c) for r in all_results for c in r["constrained"]]
    if constrained:
        body += ["", "On a constrained link (a namespace; 8 s of clean watching, then the constraint, kept 10 s "
                 "past the move down, then lifted): time from applying it to the server's decision / to the "
                 "browser's 320x240 picture, and from lifting it to the decision / to 640x480 again.", "",
                 "| browser | constraint | runs | down: decided | down: picture | up: decided | up: picture "
                 "| back up while constrained |", "|---|---|---|---|---|---|---|---|"]
        for name in dict.fromkeys(b for b, _ in constrained):
            for kind, label in (("rate", "400 kbit/s (tc tbf)"), ("loss", "15 % loss")):
                cases = [c for b, c in constrained if b == name and c.get("constraint") == kind]
                if not cases:
                    continue
                body.append(f"| {name} | {label} | {len(cases)} | {_figures([c.get('down_decided_s') for c in cases])} "
                            f"| {_figures([c.get('down_shown_s') for c in cases])} "
                            f"| {_figures([c.get('up_decided_s') for c in cases])} "
                            f"| {_figures([c.get('up_shown_s') for c in cases])} "
                            f"| {sum(1 for c in cases if c.get('went_up_while_constrained'))} |")
    write_section("layer-policy", "Layer policy on real browsers", "\n".join(body))


async def cancellable(work: Any) -> Any:
    """Run ``work``; SIGTERM cancels it, so browsers, the server and namespaces are cleaned up."""
    task = asyncio.ensure_future(work)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--browsers", default="chromium,firefox")
    parser.add_argument("--policies", default="before,after", help="before: the policy of before issue 8")
    parser.add_argument("--constrained-runs", type=int, default=3, help="per browser and constraint (new policy)")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--doc-from", nargs="*", help="only write docs/benchmarks.md from these results files")
    args = parser.parse_args()
    if args.doc_from:
        # A browser and policy measured in several files: for each part (healthy runs,
        # constrained runs), the last file named that has some wins.
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for path in args.doc_from:
            for r in json.loads(Path(path).read_text())["results"]:
                key = (r["browser"], r["policy"])
                merged[key] = {**merged.get(key, {}), **{k: v for k, v in r.items() if v or key not in merged}}
        write_doc(sorted(merged.values(), key=lambda r: (r["policy"] != "before", r["browser"])), args)
        return
    results: list[dict[str, Any]] = []
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    partial = RESULTS / f"layer-policy-{stamp}.json"
    with steady_vp8(1_000_000):
        for policy in args.policies.split(","):
            for name in args.browsers.split(","):
                constrained = args.constrained_runs if policy == "after" else 0
                results.append(asyncio.run(cancellable(run_browser(name, policy, args.runs, args.seconds,
                                                                   constrained))))
                # Saved as it goes: a long run that is stopped keeps what it measured.
                partial.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    if not args.no_doc:
        write_doc(results, args)


if __name__ == "__main__":
    main()
