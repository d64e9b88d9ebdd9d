"""The recorder: a subscriber of the program feed, like a hall, that writes what it receives to a file.

It takes the same shared encoded packets every hall gets (no decoding, no
encoding) and hands copies to a :class:`~server.recording.writer.PartWriter`.
What it has to add is time: the feed's video and audio run on clocks of
their own (each source's RTP clock, rewritten to stay monotonic across
switches; the mix's sample counter), so each track is anchored to when its
packets arrive, and re-anchored when the two part by more than
:data:`REANCHOR_SECONDS` (nobody on air for a while, a source restarted).

A part holds one video codec, as its container does: the recorder decodes
only the codec it chose at its first picture, and the program's shared
transcode gives it the pictures of sources that send the other (see
:meth:`FeedRecorder.choose_codec`). The file's suffix follows the codec
(``.webm`` for VP8, ``.mkv`` for H.264): :meth:`opened` says which.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiortc.mediastreams import MediaStreamError

from server.media.codecs import EncodedFrame, VideoCodec, frame_size
from server.media.fanout import ForwardTrack
from server.media.feed import ProgramFeed
from server.recording.writer import CONTAINERS, DEFAULT_SIZE, Kind, PartWriter, WriteStats

log = logging.getLogger(__name__)

REANCHOR_SECONDS = 0.5
# Audio that arrives before the first picture waits this long for it; then
# the file starts without (the speaker may join after the start).
WAIT_FOR_VIDEO_SECONDS = 3.0


class TrackClock:
    """Maps a track's own timestamps to milliseconds of the part, following their arrival."""

    def __init__(self) -> None:
        self._source: float | None = None
        self._out = 0.0
        self.last_ms: int | None = None

    def map(self, source_seconds: float, arrival: float) -> int:
        """``arrival``: seconds since the part began, when the packet arrived."""
        if self._source is None or abs((source_seconds - self._source) - (arrival - self._out)) > REANCHOR_SECONDS:
            self._source, self._out = source_seconds, arrival
        ms = round((self._out + source_seconds - self._source) * 1000)
        if self.last_ms is not None and ms <= self.last_ms:
            ms = self.last_ms + 1
        self.last_ms = ms
        return ms


@dataclass(frozen=True)
class PartResult:
    path: Path
    started_at: datetime | None  # wall clock at the part's media time 0; None: nothing arrived
    duration_seconds: float
    stats: WriteStats | None  # None: no file was written


class FeedRecorder:
    """Records one session's program into ``path`` from now until :meth:`stop` or the feed's end."""

    def __init__(self, feed: ProgramFeed, path: Path, *, codec: VideoCodec | None = None) -> None:
        """``path``'s suffix is replaced by the container's; ``codec`` fixes the part's video codec
        (the earlier parts' of a resumed recording), None lets the first picture choose."""
        self.path = path
        self._feed = feed
        self.codec = codec
        self._opened = asyncio.get_running_loop().create_future()
        self.subscription = feed.subscribe(None)
        if codec is not None:
            feed.set_codecs(self.subscription, frozenset({codec}))
        self._t0: float | None = None
        self.started_at: datetime | None = None
        self._clocks: dict[Kind, TrackClock] = {"video": TrackClock(), "audio": TrackClock()}
        self._waiting: list[tuple[Kind, bytes, int, bool]] = []
        self._writer: PartWriter | None = None
        self._readers = [asyncio.create_task(self._read_logged(track), name=f"recorder-{track.kind}")
                         for track in self.subscription.tracks]

    def media_time(self) -> float:
        """Seconds of media so far (0 before the first packet)."""
        return 0.0 if self._t0 is None else time.monotonic() - self._t0

    @property
    def done(self) -> bool:
        """The feed sends no more (stopped, or the room closed)."""
        return all(reader.done() for reader in self._readers)

    async def finished(self) -> None:
        """Until the feed stops sending (the room closed, or :meth:`stop`)."""
        await asyncio.gather(*self._readers, return_exceptions=True)

    async def _read_logged(self, track: ForwardTrack) -> None:
        try:
            await self._read(track)
        except Exception:
            # The part ends here (what was written stays playable); never silently.
            log.exception("recorder %s: reading the %s failed", self.path, track.kind)

    async def _read(self, track: ForwardTrack) -> None:
        kind: Kind = "video" if track.kind == "video" else "audio"
        while True:
            try:
                packet = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now
                self.started_at = datetime.now(UTC)
            if packet.pts is None or packet.time_base is None:
                continue
            if isinstance(packet, EncodedFrame) and self.codec is None:
                self.codec = self.choose_codec(packet)
                self._feed.set_codecs(self.subscription, frozenset({self.codec}))
            if isinstance(packet, EncodedFrame) and packet.codec != self.codec:
                continue  # the last forwarded frame before the transcode for this part's codec begins
            ms = self._clocks[kind].map(float(packet.pts * packet.time_base), now - self._t0)
            # A copy: the packet object is shared with every hall's sender.
            self._write(kind, bytes(packet), ms, kind == "audio" or bool(packet.is_keyframe), now)

    def choose_codec(self, first: EncodedFrame) -> VideoCodec:
        """The part's codec: H.264 while any source sends it, else the first picture's.

        Whatever is not in the part's codec is transcoded for it, once: a
        studio's 1080p H.264 would cost a whole core to turn into VP8, a
        hall's 480p VP8 a few percent to turn into H.264.
        """
        return "h264" if "h264" in self._feed.source_codecs() else first.codec

    async def opened(self) -> Path | None:
        """The file once it is opened (its suffix names its container), None if the feed ended first."""
        # Waiting on the readers themselves (a gather of them, cancelled, would cancel them).
        while not self._opened.done() and not self.done:
            await asyncio.wait({self._opened, *[r for r in self._readers if not r.done()]},
                               return_when=asyncio.FIRST_COMPLETED)
        return self._opened.result() if self._opened.done() else None

    def _write(self, kind: Kind, data: bytes, ms: int, keyframe: bool, now: float) -> None:
        if self._writer is not None:
            self._writer.put(kind, data, ms, keyframe)
            return
        size = frame_size(self.codec, data) if kind == "video" and keyframe and self.codec else None
        if size is None:
            self._waiting.append((kind, data, ms, keyframe))
            assert self._t0 is not None
            if now - self._t0 < WAIT_FOR_VIDEO_SECONDS:
                return
        self._open(size or DEFAULT_SIZE, data if size is not None else b"")
        assert self._writer is not None
        if size is not None:
            self._writer.put(kind, data, ms, keyframe)

    def _open(self, size: tuple[int, int], first_frame: bytes = b"") -> None:
        codec = self.codec or "vp8"
        self.path = self.path.with_suffix(CONTAINERS[codec][1])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = PartWriter(self.path, size, codec=codec, first_frame=first_frame)
        if not self._opened.done():
            self._opened.set_result(self.path)
        # The file's first video packet must be a keyframe: what waited is audio (and nothing else).
        for item in self._waiting:
            if item[0] == "audio":
                self._writer.put(*item)
        self._waiting.clear()

    async def stop(self) -> PartResult:
        """Stop receiving, write what is left and close the file."""
        self._feed.unsubscribe(self.subscription)
        await self.finished()
        if self._writer is None and self._waiting:
            self._open(DEFAULT_SIZE)
        if not self._opened.done():
            self._opened.set_result(None)
        if self._writer is None:
            return PartResult(self.path, None, 0.0, None)
        stats = await asyncio.to_thread(self._writer.close)
        return PartResult(self.path, self.started_at, stats.last_ms / 1000, stats)
