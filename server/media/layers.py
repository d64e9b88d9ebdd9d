"""Shared transcodes of the program video: the low layer for halls on poor links, and the
program in one codec for viewers that decode only that one.

The program's encoded frames (VP8 or H.264) are decoded once, scaled and
encoded once, in one worker thread, and only while some viewer watches the
output. The low layer is 240 lines with the program's own aspect ratio
(320x240 for 4:3, 426x240 for 16:9) at about 300 kbit/s in VP8. Every
low-layer viewer shares those packets, exactly as high-layer viewers share
the forwarded ones. Low-layer packets keep the program's timestamps, so a viewer moving between layers (on a keyframe of the
layer it joins) keeps one monotonic timeline.

Who moves is decided per viewer by :class:`LayerPolicy`, from what its RTCP
says over time: the loss in its receiver reports, and its bandwidth estimate
against what is actually sent to it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from av.video.frame import PictureType

from server.media.codecs import EncodedFrame, VideoCodec
from server.media.fanout import Fanout
from server.media.hooks import ReceiverReport

log = logging.getLogger(__name__)

LOW_HEIGHT = 240
LOW_BITRATE = 300_000
# A new estimate this far under the previous one: the receiver backed off.
BACKED_OFF = 0.95
TIME_BASE = Fraction(1, 90_000)
# Frames waiting for the worker; more and the oldest is dropped (then a
# keyframe is asked of the source, the decoder needs one to recover).
BACKLOG = 3


def low_size(width: int, height: int) -> tuple[int, int]:
    """The low layer's picture for a ``width`` x ``height`` program: 240 lines, the same aspect, even sides."""
    if height <= LOW_HEIGHT:
        return width - width % 2, height - height % 2
    return max(2, round(width * LOW_HEIGHT / height / 2) * 2), LOW_HEIGHT


class SharedTranscode:
    """One shared decode and encode of the program, pushed to every track of its fanout.

    It runs in a worker thread and only while some track watches it. The
    program's frames (VP8 or H.264, whatever the source on air sends) are
    decoded once, scaled to :meth:`size` and encoded once in ``codec``; the
    output keeps the program's timestamps.
    """

    name = "transcode"

    def __init__(self, loop: asyncio.AbstractEventLoop, request_source_keyframe: Callable[[], None],
                 codec: VideoCodec = "vp8") -> None:
        self.fanout = Fanout()
        self.codec: VideoCodec = codec
        self._loop = loop
        self._request_source_keyframe = request_source_keyframe
        self._inbox: queue.Queue[EncodedFrame | None] = queue.Queue()
        self._force_keyframe = threading.Event()
        self._decoder: av.CodecContext | None = None
        self._decoding: VideoCodec | None = None
        self._encoder: av.CodecContext | None = None
        self._need_keyframe = True
        self._thread: threading.Thread | None = None
        self._closed = False
        # Told each output frame before the fanout; False keeps it from the fanout.
        self.accept: Callable[[EncodedFrame], bool] = lambda frame: True
        self.frames_in = 0
        self._picture_id = 0  # VP8's, numbered over this transcode's own frames
        self.frames_out = 0
        self.cpu_seconds = 0.0

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The output picture for a ``width`` x ``height`` program."""
        return width - width % 2, height - height % 2

    def bitrate(self, width: int, height: int) -> int:
        """Bits per second of the output at that size."""
        return max(LOW_BITRATE, min(6_000_000, round(width * height * 30 * 0.08)))

    @property
    def active(self) -> bool:
        return bool(self.fanout.tracks)

    def feed(self, frame: EncodedFrame) -> None:
        """One program frame (on the event loop); transcoded only while someone watches this output."""
        if not self.active:
            self._need_keyframe = True
            return
        if self._need_keyframe:
            if not frame.is_keyframe:
                # The decoder starts at a keyframe: ask the source (rate-limited there).
                self._request_source_keyframe()
                return
            self._need_keyframe = False
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()
        if self._inbox.qsize() >= BACKLOG:
            # Behind: drop what waits and restart from the next keyframe.
            while not self._inbox.empty():
                self._inbox.get_nowait()
            self._need_keyframe = True
            self._request_source_keyframe()
            return
        self._inbox.put(frame)

    def restart(self) -> None:
        """Start again at the source's next keyframe (the input stream was cut, e.g. another source)."""
        self._need_keyframe = True

    def request_keyframe(self) -> None:
        """The next output frame is a keyframe (a viewer joins)."""
        self._force_keyframe.set()

    def _work(self) -> None:
        while True:
            frame = self._inbox.get()
            if frame is None:
                return
            started = time.thread_time()
            try:
                out = self._transcode(frame)
            except (av.FFmpegError, ValueError):
                log.debug("%s: a frame could not be transcoded", self.name, exc_info=True)
                self._decoder = None
                out = []
            self.cpu_seconds += time.thread_time() - started
            for encoded in out:
                if self._closed:
                    return
                try:
                    self._loop.call_soon_threadsafe(self._publish, encoded)
                except RuntimeError:
                    return  # the loop closed while this frame was being transcoded

    def _transcode(self, frame: EncodedFrame) -> list[EncodedFrame]:
        if self._decoder is None or self._decoding != frame.codec:
            self._decoder = av.CodecContext.create(frame.codec, "r")
            self._decoding = frame.codec
        out: list[EncodedFrame] = []
        source = av.Packet(frame.data)
        source.pts, source.time_base = frame.pts, TIME_BASE
        for picture in self._decoder.decode(source):
            self.frames_in += 1
            size = self.size(picture.width, picture.height)
            if self._encoder is None or (self._encoder.width, self._encoder.height) != size:
                # First frame, or the program changed size (another source on air).
                self._encoder = self._new_encoder(*size)
            small = picture.reformat(width=size[0], height=size[1], format="yuv420p")
            small.pts, small.time_base = frame.pts, TIME_BASE
            if self._force_keyframe.is_set():
                self._force_keyframe.clear()
                small.pict_type = PictureType.I
            for encoded in self._encoder.encode(small):
                out.append(EncodedFrame(self.codec, bytes(encoded), frame.pts, bool(encoded.is_keyframe),
                                        picture_id=self._picture_id))
                self._picture_id = (self._picture_id + 1) % (1 << 15)
        return out

    def _new_encoder(self, width: int, height: int) -> av.CodecContext:
        if self.codec == "vp8":
            encoder = av.CodecContext.create("libvpx", "w")
            encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                               "error-resilient": "1", "g": "3000"}
        else:
            encoder = av.CodecContext.create("libx264", "w")
            # What a browser decodes everywhere: constrained baseline, no B-frames, SPS/PPS before each IDR.
            encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                               "bf": "0", "g": "3000", "x264-params": "repeat-headers=1:annexb=1"}
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuv420p"
        encoder.bit_rate = self.bitrate(width, height)
        encoder.time_base = TIME_BASE
        # x264's rate control spends bit_rate / framerate per frame: without it, 90,000 fps.
        encoder.framerate = Fraction(30, 1)
        # A new encoder starts with a keyframe; viewers resume on it.
        self._force_keyframe.set()
        return encoder

    def _publish(self, frame: EncodedFrame) -> None:
        if self._closed or not self.accept(frame):
            return
        self.frames_out += 1
        self.fanout.push(frame)

    def close(self) -> None:
        """Stop the worker: it publishes nothing more, even the frame it is transcoding now."""
        self._closed = True
        if self._thread is not None:
            self._inbox.put(None)


class LowLayer(SharedTranscode):
    """The low layer: the program at 240 lines, about 300 kbit/s, in VP8 (every browser decodes it)."""

    name = "low-layer"

    def __init__(self, loop: asyncio.AbstractEventLoop, request_source_keyframe: Callable[[], None]) -> None:
        super().__init__(loop, request_source_keyframe, "vp8")

    def size(self, width: int, height: int) -> tuple[int, int]:
        return low_size(width, height)

    def bitrate(self, width: int, height: int) -> int:
        return LOW_BITRATE


@dataclass(frozen=True)
class _Report:
    at: float
    lost: int
    highest: int
    octets: int


@dataclass(frozen=True)
class _Estimate:
    at: float
    bits_per_second: int
    octets: int


class LayerPolicy:
    """Moves one viewer to the low layer when its link cannot carry the full picture, and back.

    It reads the viewer's RTCP as it comes (browsers send it every 30 ms to
    1 s, faster while their estimate moves or packets go missing), so every
    rule is over time, never over a count of reports:

    * **Loss** is the strongest signal: measured from the cumulative counters
      of the receiver reports (lost / expected), never from one report's
      fraction (over 30 ms it is 0 % or 66 %). Down when the loss over the
      last ``LOSS_WINDOW`` seconds is at least ``DOWN_LOSS``, packets kept
      going missing (some lost in the last ``RECENT`` seconds), and both held
      for ``DOWN_HOLD`` seconds: a sustained loss, not one burst.
    * **The bandwidth estimate** (REMB) of a browser starts low and ramps up
      over its first seconds, then tracks what it receives. It is not read
      for ``ESTIMATE_GRACE`` seconds after joining or a move, and then it
      says "starved" only when, for ``STARVED_WINDOW`` seconds, every estimate
      stayed below ``STARVED_RATIO`` of what was actually sent to this viewer
      (and of what the full picture ``needed``), it did not rise (by
      ``RISING``) meanwhile, and the receiver cut it (by 5 % or more, at
      most ``2 * STARVED_WINDOW`` seconds ago): congestion is what makes a
      browser's estimator back off. An estimate that keeps pace with what we
      send, climbs towards it, or merely stalls, is a healthy link.
    * **Up** again needs ``up_after`` seconds on the low layer (hysteresis),
      loss under ``UP_LOSS`` over the last ``UP_CLEAN`` seconds, and an
      estimate not starved even for the low layer. A receiver's estimate
      cannot rise far above what it receives and we send no probing padding,
      so that is all a low-layer viewer can show: the move up is the probe.
      One that fails (down again within ``PROBE_FAILED`` seconds) doubles
      ``up_after``, up to ``UP_AFTER_MAX``; ``PROBE_PASSED`` seconds up bring
      it back to ``UP_AFTER``.

    Every window starts afresh at each move: the reports that moved a viewer
    down never count towards moving it up, nor the reverse.
    """

    LOSS_WINDOW = 2.0
    DOWN_LOSS = 0.05
    DOWN_HOLD = 1.5
    # ...and packets still go missing: some lost over the last RECENT seconds.
    RECENT = 0.5
    # Fewer packets expected in a window than this, and its loss says nothing.
    MIN_PACKETS = 30
    ESTIMATE_GRACE = 5.0
    STARVED_WINDOW = 3.0
    STARVED_RATIO = 0.8
    RISING = 1.05
    UP_LOSS = 0.02
    UP_CLEAN = 5.0
    UP_AFTER = 15.0
    UP_AFTER_MAX = 120.0
    PROBE_FAILED = 15.0
    PROBE_PASSED = 60.0
    DECIDE_EVERY = 0.1

    def __init__(self, move: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                 needed: Callable[[], float] = lambda: 1_000_000) -> None:
        self.layer = "high"
        # Why the last move happened (for the log and for tests).
        self.reason = ""
        self._move = move
        self._clock = clock
        # Bits per second the full picture takes now (the program measures it).
        self._needed = needed
        self._since = clock()  # joined, or last moved
        self._reports: deque[_Report] = deque()
        self._estimates: deque[_Estimate] = deque()
        self._lossy_since: float | None = None
        self._up_after = self.UP_AFTER
        self._went_up_at: float | None = None
        self._decided_at = -1e9
        self._backed_off_at: float | None = None

    # what the viewer reports (server.media.hooks.ReceiverReports) ----------------

    def report(self, report: ReceiverReport) -> None:
        now = self._clock()
        self._reports.append(_Report(now, report.packets_lost, report.highest_sequence, report.octets_sent))
        self._forget(self._reports, now)
        self._decide(now)

    def bandwidth(self, bits_per_second: int, octets_sent: int) -> None:
        now = self._clock()
        if (self._estimates and bits_per_second < BACKED_OFF * self._estimates[-1].bits_per_second
                and now - self._since >= self.ESTIMATE_GRACE):
            # The receiver's estimator cut its estimate: it saw the link congest.
            self._backed_off_at = now
        self._estimates.append(_Estimate(now, bits_per_second, octets_sent))
        self._forget(self._estimates, now)
        self._decide(now)

    # the rules ----------------------------------------------------------------------

    def _decide(self, now: float) -> None:
        # A lossy viewer sends RTCP every 30 ms; deciding ten times a second is plenty.
        if now - self._decided_at < self.DECIDE_EVERY:
            return
        self._decided_at = now
        if self.layer == "high":
            self._decide_high(now)
        else:
            self._decide_low(now)

    def _decide_high(self, now: float) -> None:
        if self._went_up_at is not None and now - self._went_up_at >= self.PROBE_PASSED:
            self._up_after, self._went_up_at = self.UP_AFTER, None
        loss = self._loss(now, self.LOSS_WINDOW)
        recent = self._loss(now, self.RECENT, min_packets=1)
        if loss is not None and loss >= self.DOWN_LOSS and recent != 0:
            if self._lossy_since is None:
                self._lossy_since = now
            if now - self._lossy_since >= self.DOWN_HOLD:
                self._switch("low", now, f"loss {loss:.0%} over {self.LOSS_WINDOW:g} s")
                return
        elif loss is not None:
            # Clean, or a burst that is over: an outage shorter than DOWN_HOLD moves nobody.
            self._lossy_since = None
        starved = self._starved(now)
        if starved is not None:
            self._switch("low", now, starved)

    def _decide_low(self, now: float) -> None:
        if now - self._since < self.ESTIMATE_GRACE:
            return
        if self._starved(now) is not None:
            return  # the link does not even carry the low layer
        if now - self._since < self._up_after:
            return
        clean = self._loss(now, self.UP_CLEAN)
        if clean is not None and clean < self.UP_LOSS:
            self._switch("high", now, f"loss {clean:.0%} over {self.UP_CLEAN:g} s after {self._up_after:g} s low")

    def _loss(self, now: float, window: float, min_packets: int | None = None) -> float | None:
        """Packets lost / expected over the last ``window`` seconds since the last move, or None (too little to say)."""
        reports = self._reports
        if len(reports) < 2:
            return None
        newest = reports[-1]
        # The newest report at least ``window`` before the newest (searched from the end: the deque is long).
        reference = next((r for r in reversed(reports) if r.at <= newest.at - window), None)
        if reference is None:
            return None
        expected = newest.highest - reference.highest
        if expected < (self.MIN_PACKETS if min_packets is None else min_packets):
            return None
        return max(0, newest.lost - reference.lost) / expected

    def _window(self, now: float) -> list[_Estimate] | None:
        """The estimates of the last STARVED_WINDOW seconds (after the grace), if they cover it."""
        start = max(now - self.STARVED_WINDOW, self._since + self.ESTIMATE_GRACE)
        estimates = list(itertools.takewhile(lambda e: e.at >= start, reversed(self._estimates)))[::-1]
        if len(estimates) < 2 or estimates[-1].at - estimates[0].at < 0.8 * self.STARVED_WINDOW:
            return None
        return estimates

    def _starved(self, now: float) -> str | None:
        """Why the estimate says the link carries less than we send to it (None: it does not say so)."""
        estimates = self._window(now)
        if estimates is None or self._backed_off_at is None or now - self._backed_off_at > 2 * self.STARVED_WINDOW:
            return None
        first, last = estimates[0], estimates[-1]
        sent = (last.octets - first.octets) * 8 / (last.at - first.at)
        if sent <= 0:
            return None
        # On the full picture, also below what it needs: a burst we sent is not the picture's due.
        ceiling = self.STARVED_RATIO * (sent if self.layer == "low" else min(sent, self._needed()))
        if all(e.bits_per_second < ceiling for e in estimates) \
                and last.bits_per_second <= self.RISING * first.bits_per_second:
            return (f"estimate {last.bits_per_second / 1000:.0f} kbit/s for {self.STARVED_WINDOW:g} s, "
                    f"sending {sent / 1000:.0f} kbit/s")
        return None

    def _forget(self, samples: deque[Any], now: float) -> None:
        # Keep what the longest window needs, and one sample older than it as its reference.
        horizon = now - max(self.UP_CLEAN, self.STARVED_WINDOW) - 1.0
        while len(samples) > 1 and samples[1].at <= horizon:
            samples.popleft()

    def _switch(self, layer: str, now: float, reason: str) -> None:
        if layer == "low" and self._went_up_at is not None and now - self._went_up_at < self.PROBE_FAILED:
            self._up_after = min(self._up_after * 2, self.UP_AFTER_MAX)
        self._went_up_at = now if layer == "high" else self._went_up_at
        self.layer, self.reason, self._since, self._lossy_since = layer, reason, now, None
        self._backed_off_at = None
        self._reports.clear()
        self._estimates.clear()
        log.info("layer policy: to the %s layer (%s)", layer, reason)
        self._move(layer)
