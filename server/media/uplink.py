"""A relay's one connection to its parent's program (issue 14): received without decoding, fanned out here.

At the parent (the hub, or a relay above) the uplink is one more viewer of
the program: a subscription that hears everything. Here it is the only input
of a :class:`~server.media.feed.ProgramFeed`: its video is a source like a
publisher's, forwarded frame by frame (``hooks.receive_encoded``), and its
audio is the parent's mix, forwarded packet by packet
(:meth:`~server.media.audio.ProgramAudio.forward`). Nothing is decoded or
encoded on a relay, whatever the number of viewers below it.

A viewer here that asks for a keyframe asks the uplink's source, which sends
a PLI to the parent; the parent forwards it to the publisher on air.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.media import hooks
from server.media.feed import ProgramFeed
from server.media.peer import IceConfig, new_peer
from server.media.video import EncodedVideoSource

log = logging.getLogger(__name__)

UPLINK_KEY = "uplink"

# Sends the offer to the parent and returns its answer (SDP text); raises when the parent refuses.
Exchange = Callable[[str], Awaitable[str]]


class Uplink:
    """One session's program from the parent, into ``feed``.

    ``on_lost`` is called once when the connection fails or closes after it
    was made (the relay reconnects with a new uplink).
    """

    def __init__(self, feed: ProgramFeed, ice: IceConfig, *, on_lost: Callable[[], None] = lambda: None) -> None:
        self.feed = feed
        # Before any viewer subscribes: the feed's mixer must never start beside the forwarded mix.
        feed.audio.forwarding = True
        self.ice = ice
        self._on_lost = on_lost
        self.pc: RTCPeerConnection | None = None
        self.video: EncodedVideoSource | None = None
        self._audio_task: asyncio.Task[None] | None = None
        self.audio_packets = 0
        self.connected = False
        self._closed = False

    @property
    def video_frames(self) -> int:
        return self.video.frames if self.video is not None else 0

    async def connect(self, exchange: Exchange, timeout: float = 15.0) -> None:
        """Offer, have ``exchange`` carry it to the parent, and wait until the media flows (or raise)."""
        pc = self.pc = new_peer(self.ice)
        video = pc.addTransceiver("video", direction="recvonly")
        audio = pc.addTransceiver("audio", direction="recvonly")
        hooks.prefer_codecs(video)
        hooks.prefer_codecs(audio)
        hooks.receive_encoded(video.receiver, pc)
        hooks.receive_encoded(audio.receiver, pc)
        connected = asyncio.get_running_loop().create_future()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and self.video is None:
                self.video = EncodedVideoSource(UPLINK_KEY, track, video.receiver, pc, self.feed.video.on_packet)
                self.feed.add_video(self.video)
                self.feed.show(UPLINK_KEY)
            elif track.kind == "audio" and self._audio_task is None:
                self._audio_task = asyncio.create_task(self._forward_audio(track), name="uplink-audio")

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            if state == "connected":
                self.connected = True
                if not connected.done():
                    connected.set_result(None)
            elif state in ("failed", "closed"):
                if not connected.done():
                    connected.set_exception(ConnectionError(f"the uplink's connection {state}"))
                if self.connected and not self._closed:
                    self.connected = False
                    self._on_lost()

        await pc.setLocalDescription(await pc.createOffer())
        answer = await exchange(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(connected, timeout)

    async def _forward_audio(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                packet = await track.recv()
            except MediaStreamError:
                return
            if isinstance(packet, av.Packet):
                self.audio_packets += 1
                self.feed.audio.forward(packet)

    async def close(self) -> None:
        self._closed = True
        if self.video is not None:
            self.feed.remove_video(self.video)
            await self.video.close()
        if self._audio_task is not None:
            self._audio_task.cancel()
            try:
                await self._audio_task
            except asyncio.CancelledError:
                pass
        if self.pc is not None:
            await self.pc.close()
