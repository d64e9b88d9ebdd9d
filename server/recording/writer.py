"""One part of a recording, written as it goes: encoded packets in, a file playable at every moment out.

VP8 goes into WebM, H.264 into Matroska (WebM holds only VP8, VP9 and AV1;
Chromium plays both). The recipe is in docs/architecture.md ("The archive"):
a mux-only video stream (for H.264, a stream made from the first keyframe, so
that the header holds its SPS and PPS as avcC and the muxer stores each frame
length-prefixed, as players expect),
an Opus stream whose header comes from an encoder that is opened and never
fed, 500 ms clusters flushed packet by packet (a killed writer loses at most
the cluster being written), no CRCs, and no ``live`` flag (a normally closed
file keeps its duration and cues). Every packet gets its time base, its
keyframe flag and a strictly increasing timestamp, or the file comes out
unseekable or hours long.

The writing happens in a thread of its own: a slow disk never holds up the
event loop that forwards the lecture, and a disk that is too slow for too
long costs dropped packets (counted), never unbounded memory. Packets are
never held in memory for long: while the feed sends sound and no picture
the last picture is repeated every two seconds, since libavformat's
interleaving would otherwise keep the sound until the part closed.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av

from server.media.codecs import VideoCodec

log = logging.getLogger(__name__)

Kind = Literal["video", "audio"]
MILLISECONDS = Fraction(1, 1000)
# About 30 s of a lecture's packets (30 video + 50 audio a second): a disk
# stalled longer than that loses packets rather than the server its memory.
QUEUE_LIMIT = 2400
CLUSTER_MS = 500
OPUS_FRAME_MS = 20
# Sound without a picture for this long: the last picture is repeated (see PartWriter._run).
FILL_MS = 2000
# A picture size for the header when the feed sends no video at first; VP8
# frames carry their own size, and players follow it.
DEFAULT_SIZE = (640, 360)
# The container for each codec the program carries, and the file suffix it goes by.
CONTAINERS: dict[VideoCodec, tuple[str, str]] = {"vp8": ("webm", ".webm"), "h264": ("matroska", ".mkv")}


def _black_keyframe(codec: VideoCodec, size: tuple[int, int]) -> bytes:
    """One black keyframe at ``size``, for a part whose feed sent sound before any picture."""
    import numpy as np

    try:
        encoder = av.CodecContext.create("libvpx" if codec == "vp8" else "libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = size[0], size[1], "yuv420p"
        encoder.time_base = Fraction(1, 30)
        encoder.framerate = Fraction(30, 1)
        encoder.options = {"deadline": "realtime", "cpu-used": "8"} if codec == "vp8" else {"preset": "ultrafast"}
        if codec == "h264":
            encoder.profile = "Baseline"
        image = np.zeros((size[1], size[0], 3), np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = 0
        data = b"".join(bytes(p) for p in encoder.encode(frame)) + b"".join(bytes(p) for p in encoder.encode(None))
        return data
    except Exception:  # noqa: BLE001 - an encoder missing: no filler, the muxer's own limits apply
        log.exception("recording: could not make a black picture")
        return b""


@dataclass(frozen=True)
class WriteStats:
    packets: int
    dropped: int
    last_ms: int  # the end of the last packet written, in the part's media time
    error: str  # empty when every packet that reached the thread was written


class PartWriter:
    """Writes one WebM part in a thread; :meth:`put` never blocks."""

    def __init__(self, path: Path, size: tuple[int, int], *, codec: VideoCodec = "vp8", first_frame: bytes = b"",
                 cluster_ms: int = CLUSTER_MS) -> None:
        """``first_frame``: for H.264, the part's first keyframe (Annex B, with SPS and PPS)."""
        self.path = path
        self._size = size
        self._codec = codec
        self._first_frame = first_frame
        self._cluster_ms = cluster_ms
        self._queue: queue.SimpleQueue[tuple[Kind, bytes, int, bool] | None] = queue.SimpleQueue()
        self.packets = 0
        self.fillers = 0  # the last picture repeated while the feed sent sound and no picture
        self.dropped = 0
        self.last_ms = 0
        self.error = ""
        self._thread = threading.Thread(target=self._run, name=f"recorder-{path.parent.name}", daemon=True)
        self._thread.start()

    def put(self, kind: Kind, data: bytes, ms: int, keyframe: bool) -> bool:
        """Queue one packet (``ms``: its time in the part, strictly increasing per kind); False if dropped.

        No lock: the event loop never waits for the writer thread on one (a lock the writer took
        for every packet made a loop that found it taken sleep until the writer gave up the GIL).
        The queue's own size bounds it; only this method counts drops.
        """
        if self.error or self._queue.qsize() >= QUEUE_LIMIT:
            self.dropped += 1
            return False
        self._queue.put((kind, data, ms, keyframe))
        return True

    def close(self) -> WriteStats:
        """Write what is queued and the trailer (blocking: call it in a thread)."""
        self._queue.put(None)
        self._thread.join()
        return WriteStats(self.packets, self.dropped, self.last_ms, self.error)

    def _run(self) -> None:
        container = None
        try:
            container = av.open(str(self.path), "w", format=CONTAINERS[self._codec][0], container_options={
                "flush_packets": "1", "cluster_time_limit": str(self._cluster_ms),
                "cluster_size_limit": "2000000", "write_crc32": "0"})
            if self._codec == "h264" and self._first_frame:
                # A mux-only stream cannot be given codec data: the raw H.264 demuxer makes it from the frame.
                with av.open(io.BytesIO(self._first_frame), format="h264") as header:
                    video = container.add_stream_from_template(header.streams.video[0])
            else:
                video = container.add_mux_stream(self._codec, width=self._size[0], height=self._size[1])
            audio = container.add_stream("libopus", rate=48_000, layout="stereo")
            streams = {"video": video, "audio": audio}
            # The part's time starts at 0 for both kinds (a first picture at 0 is kept at 0); an
            # H.264 part's first keyframe is known.
            last_video_ms = -1
            last_keyframe: bytes | None = self._first_frame or None
            while (item := self._queue.get()) is not None:
                kind, data, ms, keyframe = item
                packet = av.Packet(data)
                packet.stream = streams[kind]
                packet.pts = packet.dts = ms
                packet.time_base = MILLISECONDS
                packet.is_keyframe = keyframe
                if kind == "audio":
                    packet.duration = OPUS_FRAME_MS
                if kind == "video":
                    if ms <= last_video_ms:
                        packet.pts = packet.dts = ms = last_video_ms + 1  # after a filler picture
                    last_video_ms = ms
                    if keyframe:
                        last_keyframe = data
                elif ms - last_video_ms >= FILL_MS:
                    # Sound and no picture (the source left): libavformat's interleaving would hold
                    # every audio packet until a video packet came, or the part closed. The last
                    # picture (a keyframe, standalone) is repeated instead, so sound reaches the
                    # disk as it comes and the replay shows the last picture.
                    if last_keyframe is None:
                        last_keyframe = _black_keyframe(self._codec, self._size)
                    if last_keyframe:
                        filler = av.Packet(last_keyframe)
                        filler.stream, filler.pts, filler.dts = video, ms, ms
                        filler.time_base, filler.is_keyframe = MILLISECONDS, True
                        container.mux(filler)
                        self.fillers += 1
                    last_video_ms = ms
                container.mux(packet)
                self.packets += 1
                self.last_ms = max(self.last_ms, ms + (OPUS_FRAME_MS if kind == "audio" else 0))
        except Exception as exc:  # a full disk, a closed folder: the recording reports it
            log.exception("recording %s: writing failed", self.path)
            self.error = f"{type(exc).__name__}: {exc}"
            while self._queue.get() is not None:
                pass
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception as exc:
                    log.exception("recording %s: closing failed", self.path)
                    self.error = self.error or f"{type(exc).__name__}: {exc}"
