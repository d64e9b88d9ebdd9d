"""What the quality board costs per endpoint: reading every endpoint's link, and grading every point.

    python -m bench.quality_cost --viewers 40

A media room in this process with one publisher (aiortc, 320x240 VP8 and a
tone) and ``--viewers`` viewers, each the viewer of its own bridge point,
all on 127.0.0.1 (two decode and report as a browser does, the others count
frames without decoding). Once every viewer decodes pictures and has sent receiver
reports, it times what the quality monitor does once a second:
``MediaRoom.link_readings()`` (a ``LinkMeter.read()`` per endpoint) and
``LiveSession.grade_points()`` (combine, grade, sample, alarm), many times
over, and prints the cost per endpoint per evaluation, and what that is of
one core at one evaluation a second. The result goes to
``docs/benchmarks.md`` ("Quality collection") unless ``--no-doc``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime

from aiortc import RTCSessionDescription

from bench.common import RESULTS, machine, write_section
from bench.load import CountingViewer
from server.live.events import hall_key
from server.live.lifecycle import SessionStatus
from server.live.session import LiveSession
from server.live.store import SessionInfo
from server.media.peer import IceConfig
from server.media.room import MediaRoom
from tests.media.clients import publish, view, wait_until

LOOPBACK = ("127.0.0.1",)


async def measure(viewers: int, rounds: int) -> dict[str, object]:
    room = MediaRoom(IceConfig(addresses=LOOPBACK))
    room.set_live(True)
    publisher = await publish(lambda sdp: _answer(room.publish("user:1", sdp)), (200, 40, 40), 440, steady=True)
    room.show("user:1")
    # Two viewers decode (and send the receiver reports a browser sends); the others count frames
    # without decoding, as in bench.fanout: one process cannot decode forty pictures in real time.
    decoding = [await view(lambda sdp, i=index: _answer(room.view(hall_key(i + 1), sdp))) for index in range(2)]
    counting = [CountingViewer() for _ in range(max(0, viewers - 2))]
    for index, viewer in enumerate(counting):
        await viewer.pc.setLocalDescription(await viewer.pc.createOffer())
        answer = await room.view(hall_key(index + 3), viewer.pc.localDescription.sdp)
        await viewer.pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
    try:
        await wait_until(lambda: all(p.frames >= 30 for p in decoding) and all(v.frames >= 30 for v in counting),
                         timeout=60, step=0.2)
        # Receiver reports arrive about once a second: wait until the decoding viewers' round trips are known.
        await wait_until(lambda: all(r.rtt_ms is not None for key in (hall_key(1), hall_key(2))
                                     for r in room.link_readings().get(key, [])), timeout=30, step=0.5)
        info = SessionInfo(id=1, title="bench", speaker_id=1, status=SessionStatus.LIVE,
                           invited={i + 1: f"Hall {i + 1}" for i in range(viewers)},
                           actual_start=datetime.now(UTC))
        session = LiveSession(info)
        endpoints = len(room.endpoints())
        assert endpoints == viewers + 1, (endpoints, viewers)
        began = time.perf_counter()
        for _ in range(rounds):
            readings = room.link_readings()
        read_s = (time.perf_counter() - began) / rounds
        began = time.perf_counter()
        for _ in range(rounds):
            session.grade_points(readings)
        grade_s = (time.perf_counter() - began) / rounds
        sample = readings[hall_key(1)][0]
        return {"viewers": viewers, "endpoints": endpoints, "rounds": rounds,
                "read_us_per_endpoint": round(read_s / endpoints * 1e6, 2),
                "grade_us_per_point": round(grade_s / viewers * 1e6, 2),
                "total_us_per_endpoint": round((read_s + grade_s) / endpoints * 1e6, 2),
                "core_percent_per_100_endpoints_at_1hz": round((read_s + grade_s) / endpoints * 100 * 100, 4),
                "example": {"rtt_ms": sample.rtt_ms, "loss_pct": sample.loss_pct, "jitter_ms": sample.jitter_ms,
                            "bitrate_out_kbps": sample.bitrate_out_kbps}}
    finally:
        for player in decoding:
            await player.close()
        for viewer in counting:
            await viewer.pc.close()
        await publisher.close()
        await room.close()


async def _answer(pending: object) -> str:
    answer = await pending  # type: ignore[misc]
    return answer.sdp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(measure(args.viewers, args.rounds))
    result["machine"] = machine()
    result["date"] = datetime.now(UTC).strftime("%Y-%m-%d")
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"quality-cost-{datetime.now(UTC):%Y%m%d-%H%M%S}.json").write_text(json.dumps(result, indent=2))
    if not args.no_doc:
        example = result["example"]
        write_section("quality-cost", "Quality collection", (
            f"Measured {result['date']} on {result['machine']}: `python -m bench.quality_cost --viewers "
            f"{args.viewers}` — a media room with one publisher and {args.viewers} viewers on loopback, each the "
            f"viewer of its own bridge point; what the quality monitor does once a second, timed over "
            f"{args.rounds} rounds.\n\n"
            "| step | cost |\n|---|---|\n"
            f"| reading one endpoint's link (`LinkMeter.read`: RTCP totals, round trip, byte counters) | "
            f"{result['read_us_per_endpoint']} µs |\n"
            f"| grading one point (combine, thresholds, sample, alarm) | {result['grade_us_per_point']} µs |\n"
            f"| together, per endpoint per second | {result['total_us_per_endpoint']} µs: "
            f"{result['core_percent_per_100_endpoints_at_1hz']} % of a core for 100 endpoints |\n\n"
            f"Nothing is added per packet: the figures are aiortc's own counters. An example reading on loopback: "
            f"round trip {example['rtt_ms'] and round(example['rtt_ms'], 1)} ms, loss {example['loss_pct']} %, "
            f"jitter {example['jitter_ms'] and round(example['jitter_ms'], 1)} ms, "
            f"{example['bitrate_out_kbps'] and round(example['bitrate_out_kbps'])} kbit/s out."))


if __name__ == "__main__":
    main()
