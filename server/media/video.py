"""The program's video: one publisher's encoded frames on air at a time.

Switching sources follows the recipe in docs/architecture.md ("The media hot path"):
ask the new source for a keyframe, keep the old source on air until that
keyframe arrives, switch on it, and rewrite timestamps once, on the shared
packet, so the output stays monotonic for every viewer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.media import hooks
from server.media.stats import MediaStats
from server.media.codecs import VIDEO_CODECS, EncodedFrame, VideoCodec, frame_size
from server.media.fanout import Fanout, ForwardTrack
from server.media.layers import LowLayer, SharedTranscode

log = logging.getLogger(__name__)

# Viewers' keyframe requests are coalesced: a source is asked at most this often. Halls joining
# together each wait up to this for their first picture (a burst of joins at the start of a lecture
# takes a keyframe every 0.3 s while it lasts, about 3 where 2 would take 0.5 s).
KEYFRAME_REQUEST_INTERVAL = 0.3
# A request answered later than this was answered by the source's own keyframe schedule.
ANSWERED_BY_SCHEDULE = 1.0
DEFAULT_FRAME_INTERVAL = 3000  # 1/30 s at the 90 kHz video clock


class EncodedVideoSource:
    """A publisher's video as encoded packets, consumed from the moment it arrives.

    Consuming at once matters: aiortc's receiver queue has no bound, so a
    source nobody reads would pile frames up in memory.
    """

    def __init__(self, key: str, track: MediaStreamTrack, receiver: RTCRtpReceiver, pc: RTCPeerConnection,
                 on_packet: Callable[[EncodedVideoSource, EncodedFrame], None], *,
                 stats: MediaStats | None = None) -> None:
        self.key = key
        self._stats = stats
        self._track = track
        self._receiver = receiver
        self._pc = pc
        self._on_packet = on_packet
        self._last_request = -1e9
        self._deferred: asyncio.TimerHandle | None = None
        self._ssrc: int | None = None
        self.frames = 0
        self.keyframes = 0
        self.keyframe_requests = 0
        # What the publisher sends (None before its first frame), and its picture size (from its keyframes).
        self.codec: VideoCodec | None = None
        self.size: tuple[int, int] | None = None
        # How it keyframes: seconds between its keyframes, and from a request to the next one.
        self.keyframe_interval: float | None = None
        self.request_answered_in: float | None = None
        self._last_keyframe_at: float | None = None
        self._unanswered_since: float | None = None
        self._waits: deque[float] = deque(maxlen=4)
        self._task = asyncio.create_task(self._consume(), name=f"video-source-{key}")

    async def _consume(self) -> None:
        while True:
            try:
                packet = await self._track.recv()
            except MediaStreamError:
                return
            if not isinstance(packet, EncodedFrame):
                continue
            self.frames += 1
            self.codec = packet.codec
            if packet.is_keyframe:
                self._keyframe_arrived(time.monotonic())
                self.size = frame_size(packet.codec, packet.data) or self.size
            self._on_packet(self, packet)

    def _keyframe_arrived(self, now: float) -> None:
        self.keyframes += 1
        if self._last_keyframe_at is not None:
            self.keyframe_interval = now - self._last_keyframe_at
        self._last_keyframe_at = now
        if self._unanswered_since is not None:
            self.request_answered_in = now - self._unanswered_since
            self._waits.append(self.request_answered_in)
            self._unanswered_since = None

    @property
    def ignores_requests(self) -> bool:
        """It keyframes on its own schedule (an OBS-like encoder): joins and switches wait for it.

        A publisher that answers keyframe requests (a browser, GStreamer, aiortc) does so within a
        few hundred milliseconds; one of its last few requests waiting longer than a second means
        the keyframe that came was its own periodic one.
        """
        return any(wait > ANSWERED_BY_SCHEDULE for wait in self._waits)

    def request_keyframe(self, *, force: bool = False) -> bool:
        """Send a PLI upstream, at most every KEYFRAME_REQUEST_INTERVAL unless forced.

        A request inside the interval is not dropped but deferred to its end
        (and coalesced with any others), so a viewer joining just after
        another still gets its keyframe within the interval.
        """
        now = time.monotonic()
        wait = self._last_request + KEYFRAME_REQUEST_INTERVAL - now
        if not force and wait > 0:
            if self._deferred is None:
                self._deferred = asyncio.get_running_loop().call_later(wait, self._send_deferred)
            return False
        if self._ssrc is None:
            # Parsed once: the publisher's SSRC does not change during its connection.
            self._ssrc = hooks.remote_media_ssrc(self._pc, "video")
        ssrc = self._ssrc
        if ssrc is None:
            return False
        self._last_request = now
        self.keyframe_requests += 1
        if self._stats is not None:
            self._stats.keyframe_requests += 1
        if self._unanswered_since is None:
            self._unanswered_since = now
        asyncio.ensure_future(self._send_pli(ssrc))
        return True

    def _send_deferred(self) -> None:
        self._deferred = None
        self.request_keyframe(force=True)

    async def _send_pli(self, ssrc: int) -> None:
        try:
            await hooks.send_pli(self._receiver, ssrc)
        except Exception:  # a closing transport: the next request will do
            log.debug("PLI to %s failed", self.key, exc_info=True)

    async def close(self) -> None:
        if self._deferred is not None:
            self._deferred.cancel()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


class _OneCodec:
    """High-layer viewers that decode only ``codec``: forwarded frames while the source on air sends
    it, the program's shared transcode to it otherwise."""

    def __init__(self, codec: VideoCodec) -> None:
        self.codec = codec
        self.fanout = Fanout()
        self.transcode: SharedTranscode | None = None
        self.transcoding = False


class ProgramVideo:
    """Chooses the source on air and fans its frames out to every viewer.

    Viewers are grouped by the codecs they decode. Those that decode VP8 and
    H.264 (browsers, aiortc, the hall page) are in :attr:`fanout` and get
    every forwarded frame, whatever codec its source sends: their senders
    switch payload type at the keyframe where the program switches source.
    A viewer that decodes one codec only gets forwarded frames while the
    source on air sends that codec, and the one shared transcode to it
    otherwise (started only while such a viewer exists).
    """

    def __init__(self) -> None:
        self.fanout = Fanout()
        self.only: dict[VideoCodec, _OneCodec] = {codec: _OneCodec(codec) for codec in VIDEO_CODECS}
        self.source: EncodedVideoSource | None = None
        self.pending: EncodedVideoSource | None = None
        self._offset = 0
        self._last_pts: int | None = None
        self._interval = DEFAULT_FRAME_INTERVAL
        self.switches = 0
        self.frames_out = 0
        self._picture_id = 0  # VP8's, one numbering for every viewer of the program
        # The codec of the last frame that went out (None before the first).
        self.codec: VideoCodec | None = None
        # Off before the session starts: sources are consumed, nothing goes out.
        self.enabled = True
        # What the full picture needs, in bits per second, over about the last second.
        self.bitrate = 0.0
        self._window_start = time.monotonic()
        self._window_bytes = 0
        # The shared low-layer transcode, fed every frame that goes out (server/media/layers.py).
        self.low: LowLayer | None = None
        # Told the new on-air key whenever it changes (the room tells the clients).
        self.on_switch: Callable[[str | None], None] = lambda key: None

    @property
    def on_air(self) -> str | None:
        return self.source.key if self.source else None

    def show(self, source: EncodedVideoSource | None) -> None:
        """Put ``source`` on air at its next keyframe (None: keep what is on air)."""
        if source is None or source is self.source:
            self.pending = None
            return
        self.pending = source
        source.request_keyframe(force=True)

    def forget(self, source: EncodedVideoSource) -> None:
        """The source is gone (its publisher left)."""
        if self.pending is source:
            self.pending = None
        if self.source is source:
            self.source = None
            self.on_switch(None)

    def on_packet(self, source: EncodedVideoSource, packet: EncodedFrame) -> None:
        if source is self.pending and packet.is_keyframe:
            # Switch here: the new source's timeline continues one frame after the last output.
            next_pts = 0 if self._last_pts is None else self._last_pts + self._interval
            self._offset = next_pts - packet.pts
            self.source, self.pending = source, None
            self.on_switch(source.key)
            self.switches += 1
            for group in self.only.values():
                if group.transcode is not None:
                    # Its decoder starts again at this keyframe of the new source.
                    group.transcode.restart()
        if source is not self.source:
            return
        pts = packet.pts + self._offset
        if self._last_pts is not None:
            if pts <= self._last_pts:
                # Never go backwards (a source that restarted its clock).
                self._offset += self._last_pts + self._interval - pts
                pts = self._last_pts + self._interval
            elif pts - self._last_pts < 90_000:
                self._interval = pts - self._last_pts
        packet.pts = pts
        self._last_pts = pts
        packet.picture_id = self._picture_id
        self._picture_id = (self._picture_id + 1) % (1 << 15)
        # What the program carries, even before the start (a publisher answered now sends it too).
        self.codec = packet.codec
        if self.enabled:
            self.frames_out += 1
            self._count(packet.size)
            self.fanout.push(packet)
            for group in self.only.values():
                if group.fanout.tracks:
                    self._serve(group, packet)
            if self.low is not None:
                self.low.feed(packet)

    def _serve(self, group: _OneCodec, frame: EncodedFrame) -> None:
        """One program frame for the viewers that decode only ``group.codec``."""
        if frame.codec == group.codec:
            if group.transcoding and not frame.is_keyframe:
                # Back to forwarding at a keyframe only: until then the transcode goes on.
                self._transcode(group).feed(frame)
                return
            group.transcoding = False
            group.fanout.push(frame)
            return
        if not group.transcoding:
            group.transcoding = True
            transcode = self._transcode(group)
            transcode.restart()
            transcode.request_keyframe()
        self._transcode(group).feed(frame)

    def _transcode(self, group: _OneCodec) -> SharedTranscode:
        if group.transcode is None:
            transcode = SharedTranscode(asyncio.get_running_loop(), self.request_keyframe, group.codec)
            transcode.name = f"transcode-{group.codec}"
            # The shared fanout is the group's own; what is transcoded after the group went back
            # to forwarding (frames still in the worker) is not sent.
            transcode.fanout = group.fanout
            transcode.accept = lambda frame, g=group: g.transcoding
            group.transcode = transcode
        return group.transcode

    def _group(self, codecs: frozenset[VideoCodec]) -> _OneCodec | None:
        """The group of viewers decoding only ``codecs`` (None: they decode every codec, :attr:`fanout`)."""
        if not codecs:
            raise ValueError("a viewer decodes VP8 or H.264")
        return None if set(VIDEO_CODECS) <= codecs else self.only[next(iter(codecs))]

    def attach(self, track: ForwardTrack, codecs: frozenset[VideoCodec] = frozenset(VIDEO_CODECS)) -> None:
        """Give ``track`` the full picture in the codecs it decodes (it waits for a keyframe of its stream)."""
        self.detach(track)
        group = self._group(codecs)
        if group is None:
            self.fanout.add(track)
            return
        group.fanout.add(track)
        if group.transcoding and group.transcode is not None:
            group.transcode.request_keyframe()

    def detach(self, track: ForwardTrack) -> None:
        self.fanout.discard(track)
        for group in self.only.values():
            group.fanout.discard(track)

    def delivers(self, codecs: frozenset[VideoCodec]) -> str:
        """What a track attached with ``codecs`` receives now: "forwarded" or "transcoded"."""
        group = self._group(codecs)
        if group is None:
            return "forwarded"
        transcoding = group.transcoding if group.fanout.tracks else self.codec not in (None, group.codec)
        return "transcoded" if transcoding else "forwarded"

    def _count(self, size: int) -> None:
        self._window_bytes += size
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self.bitrate = self._window_bytes * 8 / (now - self._window_start)
            self._window_start, self._window_bytes = now, 0

    def request_keyframe(self) -> None:
        """A viewer needs a keyframe (joined, lost packets, or skipped forward)."""
        if self.source is not None:
            self.source.request_keyframe()

    def request_keyframe_for(self, codecs: frozenset[VideoCodec]) -> None:
        """A full-picture viewer decoding ``codecs`` needs a keyframe: of the transcode it watches, or of the source."""
        group = self._group(codecs)
        if group is not None and group.transcoding and group.transcode is not None:
            group.transcode.request_keyframe()
            return
        self.request_keyframe()

    def viewer_track(self, on_first_packet: Callable[[], None] = lambda: None) -> ForwardTrack:
        """A new full-picture track; it starts at the next keyframe, which is asked for now."""
        track = ForwardTrack("video", on_first_packet=on_first_packet, on_keyframe_needed=self.request_keyframe)
        self.fanout.add(track)
        self.request_keyframe()
        return track

    def close(self) -> None:
        for group in self.only.values():
            if group.transcode is not None:
                group.transcode.close()
