"""The naive fan-out, for comparison only: aiortc's MediaRelay, one encode per viewer.

Speaks the same WHIP/WHEP shape as Bridgecast (POST an SDP offer, 201 with
the answer) so bench/load.py drives both the same way.  Every viewer gets
``MediaRelay().subscribe(track)``: the publisher's video is decoded once and
re-encoded by each viewer's sender.  Loopback only.

    python -m bench.naive_server --port 8100
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from server.media import hooks
from server.media.peer import LOOPBACK

# Media stays on 127.0.0.1: every connection of this process is confined.
hooks.restrict_addresses(LOOPBACK)


class Naive:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.video = None
        self.audio = None
        self.pcs: set[RTCPeerConnection] = set()

    async def whip(self, request: web.Request) -> web.Response:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.add(pc)

        @pc.on("track")
        def on_track(track: object) -> None:
            if getattr(track, "kind", "") == "video":
                self.video = track
            else:
                self.audio = track

        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(status=201, text=pc.localDescription.sdp, content_type="application/sdp",
                            headers={"Location": "/whip/resource"})

    async def whep(self, request: web.Request) -> web.Response:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.add(pc)
        for _ in range(50):
            if self.video is not None:
                break
            await asyncio.sleep(0.1)
        if self.video is not None:
            pc.addTrack(self.relay.subscribe(self.video))
        if self.audio is not None:
            pc.addTrack(self.relay.subscribe(self.audio))
        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(status=201, text=pc.localDescription.sdp, content_type="application/sdp",
                            headers={"Location": "/whep/resource"})

    async def start(self, request: web.Request) -> web.Response:
        return web.json_response({})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    naive = Naive()
    app = web.Application()
    app.router.add_post(r"/whip/sessions/{id:\d+}", naive.whip)
    app.router.add_post(r"/whep/sessions/{id:\d+}", naive.whep)
    app.router.add_post(r"/api/v1/sessions/{id:\d+}/start", naive.start)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
