"""The MP4 copy of a recording (H.264 + AAC, ``+faststart``) and its poster, for devices that cannot play WebM.

This is the one place the archive decodes and encodes, so it runs off the
live path: the server starts ``python -m server.recording.transcode SOURCE
MP4 POSTER`` in a low-priority child process, one at a time, and reads the
``progress <percent>`` lines it prints. Both outputs are written under
temporary names and renamed when complete, so a half-made MP4 never appears
under its final name.

A recording's timestamps are the source of truth for sync: the recorder
stamps packets as they arrive, so its audio may have holes (lost packets)
and its video an irregular rate. Sound is laid out by its timestamps (a hole
becomes silence) and pictures keep theirs, rather than counting samples and
frames, which would let the sound drift away from the picture after a hole.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.frame import Frame
from av.stream import Stream
from av.video.frame import PictureType
from av.video.stream import VideoStream

from server.recording.files import CUT, EmptyRecording, probe

AUDIO_RATE = 48_000
AUDIO_BIT_RATE = 128_000
# Sound this far off its timestamps (one Opus frame) is moved back onto them: a hole is filled with
# silence, sound that would overlap what is already written is dropped.
AUDIO_SLACK = AUDIO_RATE // 50
MILLISECONDS = Fraction(1, 1000)
POSTER_WIDTH = 640
POSTER_AT = 0.1  # of the duration: past the first seconds, which are often black or a title card
POSTER_MIN_SECONDS = 2.0
PROGRESS_EVERY = 0.1


class TranscodeError(Exception):
    """The source cannot be decoded at all."""


def transcode(source: Path, mp4: Path, poster: Path, *, progress: Callable[[float], None] = lambda p: None,
              threads: int = 2) -> None:
    """Decode ``source`` once into ``mp4``, and take ``poster`` from the frame at 10 % of it (if it has video)."""
    try:
        duration = max(probe(source).duration_seconds, 0.001)
        size = _first_picture_size(source)
    except (av.error.FFmpegError, EmptyRecording) as exc:
        raise TranscodeError(f"{source} cannot be read: {exc}") from exc
    poster_at = duration * POSTER_AT if duration >= POSTER_MIN_SECONDS else 0.0
    # The first picture at or after poster_at, or the last one if the duration was overestimated.
    poster_frame: av.VideoFrame | None = None
    poster_chosen = False
    temporary = mp4.with_suffix(".writing.mp4")
    report = _Progress(progress, duration)
    try:
        with av.open(str(source)) as container:
            audio = container.streams.audio[0] if container.streams.audio else None
            video = container.streams.video[0] if size is not None else None
            if video is None and audio is None:
                raise TranscodeError(f"{source} has no video or audio that can be decoded")
            if video is not None:
                video.codec_context.thread_count = threads
            # Times from the start of the file, whatever its first timestamp.
            origin = (container.start_time or 0) / av.time_base
            frames = 0
            with av.open(str(temporary), "w", format="mp4", container_options={"movflags": "+faststart"}) as output:
                out = _Mp4(output, size if video else None, audio is not None, threads)
                for frame in _decode(container, [s for s in (video, audio) if s is not None]):
                    frames += 1
                    at = float(frame.time) - origin
                    if isinstance(frame, av.VideoFrame):
                        out.picture(frame, at)
                        if not poster_chosen:
                            poster_frame, poster_chosen = frame, at >= poster_at
                    elif isinstance(frame, av.AudioFrame):
                        out.sound(frame, at)
                    report(at)
                if not frames:
                    raise TranscodeError(f"{source}: not one frame could be decoded")
                out.finish()
        _sync(temporary)
        os.replace(temporary, mp4)
    finally:
        temporary.unlink(missing_ok=True)
    if poster_frame is not None:
        _write_poster(poster_frame, poster)
    progress(1.0)


class _Mp4:
    """The MP4 being written: decoded frames in, at their source times; H.264 and AAC out."""

    def __init__(self, output: OutputContainer, size: tuple[int, int] | None, has_audio: bool, threads: int) -> None:
        self._output = output
        self._size = size
        self._video: VideoStream | None = None
        if size is not None:
            self._video = output.add_stream("libx264", rate=30)
            self._video.width, self._video.height = size
            self._video.pix_fmt = "yuv420p"
            self._video.codec_context.time_base = MILLISECONDS
            self._video.codec_context.thread_count = threads
            self._video.options = {"preset": "veryfast", "crf": "23"}
        self._audio: AudioStream | None = None
        if has_audio:
            self._audio = output.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
            self._audio.bit_rate = AUDIO_BIT_RATE
        # Opens the encoders (AAC's frame size is known from then on) and writes the header.
        output.start_encoding()
        self._last_picture = -1
        self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
        self._fifo = av.AudioFifo()
        self._audio_pts: int | None = None  # of the next AAC frame, in samples; the fifo's samples follow it

    def picture(self, frame: av.VideoFrame, at: float) -> None:
        assert self._video is not None and self._size is not None
        pts = round(at / MILLISECONDS)
        if pts <= self._last_picture:
            return
        self._last_picture = pts
        # A size change mid-file (the feed's source changed) is scaled to the first size, which the MP4 keeps.
        image = frame.reformat(width=self._size[0], height=self._size[1], format="yuv420p")
        image.pts, image.time_base = pts, MILLISECONDS
        # The source's keyframes were the feed's (one per request of a viewer): x264 places its own.
        image.pict_type = PictureType.NONE
        self._output.mux(self._video.encode(image))

    def sound(self, frame: av.AudioFrame, at: float) -> None:
        assert self._audio is not None
        start = round(at * AUDIO_RATE)
        if self._audio_pts is None:
            self._audio_pts = start
        gap = start - (self._audio_pts + self._fifo.samples)
        if gap < -AUDIO_SLACK:
            return
        if gap > AUDIO_SLACK:
            # A second at a time: a hole can last minutes (the program's sound stopped).
            for filled in range(0, gap, AUDIO_RATE):
                self._fifo.write(_silence(min(AUDIO_RATE, gap - filled)))
                self._encode_sound(final=False)
        for resampled in self._resampler.resample(frame):
            resampled.pts = None  # the fifo would check the source's times, which the gap above already took in
            self._fifo.write(resampled)
        self._encode_sound(final=False)

    def finish(self) -> None:
        """Flush the encoders (the muxer's trailer follows when the container closes)."""
        if self._audio is not None and self._audio_pts is not None:
            # (An audio stream that never had a packet, e.g. a lecture without sound, has nothing to flush.)
            for resampled in self._resampler.resample(None):
                resampled.pts = None
                self._fifo.write(resampled)
            self._encode_sound(final=True)
            self._output.mux(self._audio.encode(None))
        if self._video is not None:
            self._output.mux(self._video.encode(None))

    def _encode_sound(self, *, final: bool) -> None:
        """Whole AAC frames from the fifo (and, when ``final``, the shorter last one)."""
        assert self._audio is not None and self._audio_pts is not None
        size = self._audio.codec_context.frame_size
        while self._fifo.samples >= size or final and self._fifo.samples:
            frame = self._fifo.read(size, partial=final)
            assert frame is not None
            frame.pts, frame.time_base = self._audio_pts, Fraction(1, AUDIO_RATE)
            self._audio_pts += frame.samples
            self._output.mux(self._audio.encode(frame))


class _Progress:
    """Reports the share of the media decoded so far: rising, at most every PROGRESS_EVERY seconds, short of 1."""

    def __init__(self, callback: Callable[[float], None], duration: float) -> None:
        self._callback = callback
        self._duration = duration
        self._last = 0.0
        self._fraction = 0.0

    def __call__(self, at: float) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY:
            return
        self._last = now
        # 1.0 means done: it is reported only once the MP4 is in place.
        self._fraction = max(self._fraction, min(0.999, at / self._duration))
        self._callback(self._fraction)


def _decode(container: InputContainer, streams: list[Stream]) -> Iterator[av.VideoFrame | av.AudioFrame]:
    """Every frame that decodes, in file order; a damaged packet is skipped, a cut file ends where it was cut."""
    try:
        for packet in container.demux(*streams):
            if packet.size == 0:
                continue  # the demuxer's end-of-stream packets: the decoders are flushed below, cut or not
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue  # the next keyframe recovers the picture
            yield from _media(frames)
    except CUT:
        pass
    for stream in streams:
        yield from _media(stream.codec_context.decode(None))


def _media(frames: list[Frame]) -> Iterator[av.VideoFrame | av.AudioFrame]:
    for frame in frames:
        if isinstance(frame, av.VideoFrame | av.AudioFrame) and frame.time is not None:
            yield frame


def _first_picture_size(source: Path) -> tuple[int, int] | None:
    """The size of the first picture that decodes, made even (H.264 in 4:2:0 needs it); None without one.

    The MP4's header is written before the first frame, so the size is read
    ahead, from the pictures rather than from the WebM header, which holds
    whatever size the recorder guessed before the first keyframe came.
    """
    with av.open(str(source)) as container:
        if not container.streams.video:
            return None
        for frame in _decode(container, [container.streams.video[0]]):
            return max(2, frame.width - frame.width % 2), max(2, frame.height - frame.height % 2)
    return None


def _write_poster(frame: av.VideoFrame, poster: Path) -> None:
    """One JPEG from PyAV's mjpeg encoder (no imaging library), at most POSTER_WIDTH wide."""
    width = min(POSTER_WIDTH, frame.width)
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    width -= width % 2
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    image = frame.reformat(width=width, height=height, format="yuvj420p")
    image.pts = 0
    data = b"".join(bytes(packet) for packet in [*encoder.encode(image), *encoder.encode(None)])
    temporary = poster.with_suffix(".writing.jpg")
    try:
        temporary.write_bytes(data)
        _sync(temporary)
        os.replace(temporary, poster)
    finally:
        temporary.unlink(missing_ok=True)


def _silence(samples: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.zeros((2, samples), np.float32), format="fltp", layout="stereo")
    frame.sample_rate = AUDIO_RATE
    return frame


def _sync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def main(argv: list[str]) -> int:
    """The child process the server runs: ``progress <percent>`` lines on stdout, then ``done``."""
    parser = argparse.ArgumentParser(prog="python -m server.recording.transcode",
                                     description="Make a recording's MP4 copy and poster.")
    parser.add_argument("source", type=Path)
    parser.add_argument("mp4", type=Path)
    parser.add_argument("poster", type=Path)
    args = parser.parse_args(argv)

    def report(fraction: float) -> None:
        print(f"progress {fraction * 100:.1f}", flush=True)

    try:
        transcode(args.source, args.mp4, args.poster, progress=report)
    except (TranscodeError, av.error.FFmpegError, OSError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
