"""The MP4 copy of a recording (H.264 + AAC, ``+faststart``) and its poster, for devices that cannot play WebM.

Run as ``python -m server.recording.transcode SOURCE MP4 POSTER``: the server
starts it in a child process at low priority (``server.recording.jobs``),
one at a time, and reads the ``progress <percent>`` lines it prints. Both
outputs are written under temporary names and renamed when complete, so a
half-made MP4 never appears under its final name.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av

from server.recording.files import probe

AUDIO_RATE = 48_000
POSTER_WIDTH = 640
PROGRESS_EVERY = 0.1


class TranscodeError(Exception):
    """The source cannot be decoded at all."""


def _even(value: int) -> int:
    return max(2, value - value % 2)


def transcode(source: Path, mp4: Path, poster: Path, *, progress: Callable[[float], None] = lambda p: None,
              threads: int = 2) -> None:
    """Decode ``source`` once, encode the MP4 and take the poster from the frame at 10 % of it."""
    try:
        info = probe(source)
    except (av.error.FFmpegError, OSError) as exc:
        raise TranscodeError(f"{source} cannot be read: {exc}") from None
    duration = max(info.duration_seconds, 0.001)
    poster_at = duration * 0.1 if duration >= 2 else 0.0
    temporary = mp4.with_name(mp4.stem + ".writing.mp4")
    wrote_poster = False
    last_report = 0.0
    with av.open(str(source)) as container, av.open(str(temporary), "w", format="mp4",
                                                   options={"movflags": "+faststart"}) as output:
        video_in = container.streams.video[0] if container.streams.video else None
        audio_in = container.streams.audio[0] if container.streams.audio else None
        if video_in is None and audio_in is None:
            raise TranscodeError(f"{source} has neither video nor audio")
        video_out = audio_out = None
        size: tuple[int, int] | None = None
        last_video_pts = -1
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
        fifo = av.AudioFifo()
        audio_pts = 0
        audio_origin: float | None = None
        if video_in is not None:
            # Every stream exists before the first packet is written (the MP4 header); the size is the
            # header's, which the recorder takes from the first keyframe. Later sizes are scaled to it.
            width, height = video_in.codec_context.width or 640, video_in.codec_context.height or 360
            size = (_even(width), _even(height))
            video_out = output.add_stream("libx264", rate=30)
            video_out.width, video_out.height = size
            video_out.pix_fmt = "yuv420p"
            video_out.time_base = Fraction(1, 1000)
            video_out.codec_context.time_base = Fraction(1, 1000)
            video_out.options = {"preset": "veryfast", "crf": "23", "threads": str(threads)}
        if audio_in is not None:
            audio_out = output.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
            audio_out.bit_rate = 128_000
        streams = [s for s in (video_in, audio_in) if s is not None]
        for packet in container.demux(*streams):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue  # one damaged frame (the end of a killed part): the next keyframe recovers
            for frame in frames:
                at = frame.time
                if at is None:
                    continue
                if isinstance(frame, av.VideoFrame) and video_out is not None:
                    assert size is not None
                    pts = round(at * 1000)
                    if pts <= last_video_pts:
                        continue
                    last_video_pts = pts
                    out = frame.reformat(width=size[0], height=size[1], format="yuv420p")
                    out.pts, out.time_base = pts, Fraction(1, 1000)
                    output.mux(video_out.encode(out))
                    if not wrote_poster and at >= poster_at:
                        _write_poster(frame, poster)
                        wrote_poster = True
                elif isinstance(frame, av.AudioFrame) and audio_out is not None:
                    if audio_origin is None:
                        audio_origin = at
                        audio_pts = round(at * AUDIO_RATE)
                    for resampled in resampler.resample(frame):
                        # The fifo keeps its own count (audio_pts places it); the resampler may hand
                        # back the decoded frame itself, whose time was read above.
                        resampled.pts = None
                        fifo.write(resampled)
                    audio_pts = _drain(fifo, audio_out, output, audio_pts, final=False)
                now = time.monotonic()
                if now - last_report >= PROGRESS_EVERY:
                    last_report = now
                    progress(min(0.999, at / duration))
        if audio_out is not None:
            for resampled in resampler.resample(None):
                resampled.pts = None
                fifo.write(resampled)
            _drain(fifo, audio_out, output, audio_pts, final=True)
            output.mux(audio_out.encode(None))
        if video_out is not None:
            output.mux(video_out.encode(None))
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, mp4)
    progress(1.0)


def _drain(fifo: av.AudioFifo, stream: av.audio.stream.AudioStream, output: av.container.OutputContainer,
           pts: int, *, final: bool) -> int:
    """Encode whole AAC frames from ``fifo`` (what is left, too, when ``final``); the next pts."""
    size = stream.codec_context.frame_size or 1024
    while fifo.samples >= size or (final and fifo.samples > 0):
        frame = fifo.read(size) if fifo.samples >= size else fifo.read()
        if frame is None:
            break
        frame.pts, frame.time_base = pts, Fraction(1, AUDIO_RATE)
        pts += frame.samples
        output.mux(stream.encode(frame))
    return pts


def _write_poster(frame: av.VideoFrame, poster: Path) -> None:
    """One JPEG (PyAV's mjpeg encoder: no imaging library), at most POSTER_WIDTH wide."""
    width = min(POSTER_WIDTH, frame.width)
    height = _even(round(frame.height * width / frame.width))
    width = _even(width)
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    image = frame.reformat(width=width, height=height, format="yuvj420p")
    image.pts = 0
    data = b"".join(bytes(packet) for packet in [*encoder.encode(image), *encoder.encode(None)])
    temporary = poster.with_name(poster.stem + ".writing.jpg")
    temporary.write_bytes(data)
    os.replace(temporary, poster)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m server.recording.transcode SOURCE MP4 POSTER", file=sys.stderr)
        return 2
    source, mp4, poster = (Path(arg) for arg in argv)

    def report(fraction: float) -> None:
        print(f"progress {fraction * 100:.1f}", flush=True)

    try:
        transcode(source, mp4, poster, progress=report)
    except (TranscodeError, av.error.FFmpegError, OSError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
