"""Forwarding encoded packets to many viewers: one shared packet, one small queue per viewer.

A viewer's :class:`ForwardTrack` is what its ``RTCRtpSender`` takes from; the
sender packs the shared packet (its own headers and SRTP only, no encoder): an
:class:`~server.media.codecs.EncodedFrame` for video, an ``av.Packet`` of
Opus for audio.  A viewer's sender (``hooks.send_encoded``) takes each packet
as it is pushed, in the fan-out's own loop (``deliver``): no queue and no task
switch per packet per viewer.  Otherwise (a recorder, a relay's uplink, a
sender that cannot send at once) the packet waits in the track's queue.  A
viewer that cannot keep up never holds back the others and never grows a
queue without bound: when its queue is full it drops what it holds and waits
for the next keyframe (video), or drops the oldest packet (audio).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.media.codecs import EncodedFrame

# What a track carries: a video frame of either codec, or an Opus packet.
Shared = av.Packet | EncodedFrame

# About 1.5 s of video at 30 fps, 1 s of audio at 20 ms: a viewer further
# behind than that is skipped forward rather than shown stale pictures.
VIDEO_QUEUE = 45
AUDIO_QUEUE = 50


class ForwardTrack(MediaStreamTrack):
    """A viewer's outgoing track: yields shared encoded packets pushed by the program feed."""

    def __init__(
        self,
        kind: str,
        *,
        on_keyframe_needed: Callable[[], None] = lambda: None,
        on_first_packet: Callable[[], None] = lambda: None,
        max_queue: int | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self._queue: deque[Shared] = deque()
        self._ready = asyncio.Event()
        self._max = max_queue or (VIDEO_QUEUE if kind == "video" else AUDIO_QUEUE)
        self.on_keyframe_needed = on_keyframe_needed
        self._on_first_packet = on_first_packet
        # A new video viewer starts at a keyframe: a decoder cannot start elsewhere.
        self.waiting_for_keyframe = kind == "video"
        self.sent = 0
        self.skips = 0
        self.dropped = 0
        # A sender that sends a packet at once (hooks.send_encoded sets it once it runs): True, sent;
        # False, it could not (a TURN pair, a connection going away) and the packet is queued for recv().
        self.deliver: Callable[[Shared], bool] | None = None

    def push(self, packet: Shared) -> None:
        """Offer one packet (called by the program feed, on the event loop)."""
        if self.readyState != "live":
            return
        if self.waiting_for_keyframe:
            if not packet.is_keyframe:
                self.dropped += 1
                return
            self.waiting_for_keyframe = False
        if self.deliver is not None and not self._queue and self.deliver(packet):
            # Sent in this call: no queue, no task woken (the program's loop over its viewers sends).
            self._count_sent()
            return
        if len(self._queue) >= self._max:
            if self.kind == "video":
                # Behind: skip to the next keyframe instead of queueing more.
                self.dropped += len(self._queue)
                self._queue.clear()
                self.skips += 1
                if not packet.is_keyframe:
                    self.dropped += 1
                    self.waiting_for_keyframe = True
                    self.on_keyframe_needed()
                    return
            else:
                self._queue.popleft()
                self.dropped += 1
        self._queue.append(packet)
        self._ready.set()

    async def recv(self) -> Shared:  # type: ignore[override]
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        packet = self._queue.popleft()
        self._count_sent()
        return packet

    def _count_sent(self) -> None:
        if self.sent == 0:
            self._on_first_packet()
        self.sent += 1

    def restart_at_keyframe(self) -> None:
        """Drop what is queued and resume at the next keyframe (the viewer moved to another layer).

        What is queued belongs to the layer it left: on a link too slow for
        that layer, sending it first would keep the old picture on screen for
        seconds after the move.
        """
        if self.kind == "video":
            self.dropped += len(self._queue)
            self._queue.clear()
            self.waiting_for_keyframe = True

    def stop(self) -> None:
        super().stop()
        self.deliver = None
        self._queue.clear()
        self._ready.set()


class Fanout:
    """A set of viewer tracks that receive the same packets."""

    def __init__(self) -> None:
        self.tracks: set[ForwardTrack] = set()

    def add(self, track: ForwardTrack) -> None:
        self.tracks.add(track)

    def discard(self, track: ForwardTrack) -> None:
        self.tracks.discard(track)

    def push(self, packet: Shared) -> None:
        # A copy: a viewer's send (its first packet's callback) may move a subscription between fan-outs.
        for track in tuple(self.tracks):
            track.push(packet)
