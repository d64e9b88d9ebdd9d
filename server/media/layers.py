"""A lower layer of the program video for halls on poor links: one shared transcode.

The program's encoded frames are decoded once, scaled to 320x240 and encoded
once at about 300 kbit/s, in one worker thread, and only while some viewer is
on the low layer. Every low-layer viewer shares those packets, exactly as
high-layer viewers share the forwarded ones. Low-layer packets keep the
program's timestamps, so a viewer moving between layers (on a keyframe of the
layer it joins) keeps one monotonic timeline.

Who moves is decided per viewer by :class:`LayerPolicy` from the loss its
RTCP receiver reports.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from fractions import Fraction

import av
from av.video.frame import PictureType

from server.media.fanout import Fanout

log = logging.getLogger(__name__)

LOW_WIDTH, LOW_HEIGHT = 320, 240
LOW_BITRATE = 300_000
TIME_BASE = Fraction(1, 90_000)
# Frames waiting for the worker; more and the oldest is dropped (then a
# keyframe is asked of the source, the decoder needs one to recover).
BACKLOG = 3


class LowLayer:
    """The shared transcode to the low layer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request_source_keyframe: Callable[[], None]) -> None:
        self.fanout = Fanout()
        self._loop = loop
        self._request_source_keyframe = request_source_keyframe
        self._inbox: queue.Queue[av.Packet | None] = queue.Queue()
        self._force_keyframe = threading.Event()
        self._decoder: av.CodecContext | None = None
        self._encoder: av.CodecContext | None = None
        self._need_keyframe = True
        self._thread: threading.Thread | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.cpu_seconds = 0.0

    @property
    def active(self) -> bool:
        return bool(self.fanout.tracks)

    def feed(self, packet: av.Packet) -> None:
        """One program frame (on the event loop); transcoded only while someone watches this layer."""
        if not self.active:
            self._need_keyframe = True
            return
        if self._need_keyframe:
            if not packet.is_keyframe:
                # The decoder starts at a keyframe: ask the source (rate-limited there).
                self._request_source_keyframe()
                return
            self._need_keyframe = False
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="low-layer", daemon=True)
            self._thread.start()
        if self._inbox.qsize() >= BACKLOG:
            # Behind: drop what waits and restart from the next keyframe.
            while not self._inbox.empty():
                self._inbox.get_nowait()
            self._need_keyframe = True
            self._request_source_keyframe()
            return
        self._inbox.put(packet)

    def request_keyframe(self) -> None:
        """The next low-layer frame is a keyframe (a viewer joins the layer)."""
        self._force_keyframe.set()

    def _work(self) -> None:
        while True:
            packet = self._inbox.get()
            if packet is None:
                return
            started = time.thread_time()
            try:
                for out in self._transcode(packet):
                    self._loop.call_soon_threadsafe(self._publish, out)
            except (av.FFmpegError, ValueError):
                log.debug("low layer: a frame could not be transcoded", exc_info=True)
                self._decoder = None
            self.cpu_seconds += time.thread_time() - started

    def _transcode(self, packet: av.Packet) -> list[av.Packet]:
        if self._decoder is None:
            self._decoder = av.CodecContext.create("vp8", "r")
        if self._encoder is None:
            encoder = av.CodecContext.create("libvpx", "w")
            encoder.width, encoder.height = LOW_WIDTH, LOW_HEIGHT
            encoder.pix_fmt = "yuv420p"
            encoder.bit_rate = LOW_BITRATE
            encoder.time_base = TIME_BASE
            encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                               "error-resilient": "1", "g": "3000"}
            self._encoder = encoder
            self._force_keyframe.set()
        out: list[av.Packet] = []
        source = av.Packet(bytes(packet))
        source.pts, source.time_base = packet.pts, packet.time_base
        for frame in self._decoder.decode(source):
            self.frames_in += 1
            small = frame.reformat(width=LOW_WIDTH, height=LOW_HEIGHT, format="yuv420p")
            small.pts, small.time_base = packet.pts, TIME_BASE
            if self._force_keyframe.is_set():
                self._force_keyframe.clear()
                small.pict_type = PictureType.I
            for encoded in self._encoder.encode(small):
                encoded.pts, encoded.time_base = packet.pts, TIME_BASE
                out.append(encoded)
        return out

    def _publish(self, packet: av.Packet) -> None:
        self.frames_out += 1
        self.fanout.push(packet)

    def close(self) -> None:
        if self._thread is not None:
            self._inbox.put(None)


class LayerPolicy:
    """Moves one viewer down on sustained loss or low bandwidth, back up when its link is clear.

    Receiver reports arrive about once a second: two in a row with 10 % loss
    or more move the viewer down; eight in a row under 2 % (and at least
    eight seconds down) move it back up. On the full picture, a bandwidth
    estimate (REMB) below what it takes counts as a bad report too. On the low
    layer the estimate is ignored: a receiver's estimate cannot rise far above
    what it receives, and we send no probing padding, so only clean loss
    reports can say the link has recovered (if it has not, loss moves the
    viewer down again).
    """

    DOWN_LOSS = 0.10
    DOWN_REPORTS = 2
    UP_LOSS = 0.02
    UP_REPORTS = 8
    def __init__(self, move: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                 needed: Callable[[], float] = lambda: 1_000_000) -> None:
        self.layer = "high"
        self._move = move
        self._clock = clock
        self._bad = 0
        self._good = 0
        self._since = clock()
        self._bandwidth: int | None = None
        # Bits per second the full picture takes now (the program measures it).
        self._needed = needed

    def bandwidth(self, bits_per_second: int) -> None:
        """The receiver's latest estimate of what its link carries."""
        self._bandwidth = bits_per_second

    def report(self, fraction_lost: float) -> None:
        starved = self.layer == "high" and self._bandwidth is not None and self._bandwidth < self._needed()
        if fraction_lost >= self.DOWN_LOSS or starved:
            self._bad += 1
            self._good = 0
        elif fraction_lost < self.UP_LOSS:
            self._good += 1
            self._bad = 0
        else:
            self._bad = self._good = 0
        if self.layer == "high" and self._bad >= self.DOWN_REPORTS:
            self._switch("low")
        elif (self.layer == "low" and self._good >= self.UP_REPORTS
              and self._clock() - self._since >= self.UP_REPORTS):
            self._switch("high")

    def _switch(self, layer: str) -> None:
        self.layer, self._bad, self._good, self._since = layer, 0, 0, self._clock()
        self._move(layer)
