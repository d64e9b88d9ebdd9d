"""What the low layer's shared transcode costs: decode 640x480 VP8, scale, encode 320x240 once.

    python -m bench.layers --seconds 10

In one process (media on loopback): a publisher sends 640x480@30, two viewers
are moved to the low layer. The transcode thread's own CPU time
(``time.thread_time`` around each frame) is reported as % of one core; it does
not grow with the number of low-layer viewers, who share its packets.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json

from bench.common import machine, write_section
from server.media.peer import LOOPBACK, IceConfig
from server.media.room import MediaRoom
from tests.media.clients import publish, view, wait_until


async def measure(seconds: float) -> dict[str, object]:
    room = MediaRoom(IceConfig(addresses=LOOPBACK))
    room.show("speaker")

    def answerer(kind: str, key: str):  # type: ignore[no-untyped-def]
        async def answer(offer: str) -> str:
            endpoint = await (room.publish(key, offer) if kind == "publish" else room.view(key, offer))
            return endpoint.sdp
        return answer

    speaker = await publish(answerer("publish", "speaker"), (200, 40, 40), 440, size=(640, 480))
    viewers = [await view(answerer("view", f"user:{i}")) for i in range(2)]
    try:
        await wait_until(lambda: all(v.frames >= 30 for v in viewers), timeout=20)
        for subscription in list(room.feed.subscriptions.values()):
            room.feed.set_layer(subscription, "low")
        await wait_until(lambda: room.feed.low is not None and room.feed.low.frames_out > 30, timeout=20)
        low = room.feed.low
        assert low is not None
        cpu, frames = low.cpu_seconds, low.frames_out
        await asyncio.sleep(seconds)
        sizes = {v.sizes[-1] for v in viewers}
        return {"transcode_cpu_percent": round((low.cpu_seconds - cpu) / seconds * 100, 1),
                "frames_per_second": round((low.frames_out - frames) / seconds, 1),
                "low_viewers": len(viewers), "viewer_picture": sorted(sizes)}
    finally:
        await speaker.close()
        for viewer in viewers:
            await viewer.close()
        await room.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(measure(args.seconds))
    print(json.dumps(result))
    if not args.no_doc:
        write_section("layers", "Low layer transcode", "\n".join([
            f"Measured {datetime.date.today().isoformat()} on {machine()}: `python -m bench.layers --seconds "
            f"{args.seconds:g}`. One shared decode of the 640x480@30 program, scale, and 320x240 VP8 encode at "
            "300 kbit/s, in one worker thread, running only while a viewer is on the low layer.",
            "",
            "| transcode CPU (% of one core) | low-layer frames per second | low-layer viewers | their picture |",
            "|---|---|---|---|",
            f"| {result['transcode_cpu_percent']} % | {result['frames_per_second']} | {result['low_viewers']} "
            f"| {', '.join('x'.join(map(str, s)) for s in result['viewer_picture'])} |",
        ]))


if __name__ == "__main__":
    main()
