"""Test recordings made the way the recorder makes them, and read back the way a viewer would.

The clips are synthetic: solid-colour VP8 pictures (30 fps, a keyframe each
second) and a 440 Hz Opus tone, muxed into WebM with the recorder's recipe
(a mux-only VP8 stream, an Opus stream from an opened but unfed encoder,
millisecond timestamps, flushed 500 ms clusters). ``python -m
tests.recording.media PATH SECONDS`` writes a clip paced in real time, for a
test to kill the writer mid-file.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

RED = (220, 30, 30)
GREEN = (30, 200, 60)
BLUE = (30, 60, 220)
SIZE = (320, 240)
FPS = 30
TONE = 440.0
RATE = 48_000
OPUS_MS = 20
MUXER_OPTIONS = {"flush_packets": "1", "cluster_time_limit": "500", "cluster_size_limit": "2000000",
                 "write_crc32": "0"}

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class Encoded:
    kind: str  # "video" or "audio"
    data: bytes
    ms: int
    keyframe: bool


def encode(seconds: float, colours: list[Colour], size: tuple[int, int] = SIZE) -> list[Encoded]:
    """``seconds`` of pictures in ``colours`` (equal shares, in order) and of the tone, in time order."""
    video = av.CodecContext.create("libvpx", "w")
    video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
    video.time_base = Fraction(1, FPS)
    video.gop_size = FPS
    video.options = {"deadline": "realtime", "cpu-used": "16", "kf-max-dist": str(FPS)}
    video.thread_count = 1  # threads make libvpx several times slower on pictures this small
    audio = av.CodecContext.create("libopus", "w")
    audio.sample_rate, audio.layout, audio.format = RATE, "stereo", "s16"
    audio.time_base = Fraction(1, RATE)
    packets: list[Encoded] = []
    frames = round(seconds * FPS)
    images = [np.full((size[1], size[0], 3), colour, np.uint8) for colour in colours]
    for index in range(frames):
        image = images[index * len(colours) // frames]
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        packets += [Encoded("video", bytes(p), round(p.pts * 1000 / FPS), p.is_keyframe) for p in video.encode(frame)]
    packets += [Encoded("video", bytes(p), round(p.pts * 1000 / FPS), p.is_keyframe) for p in video.encode(None)]
    samples = RATE * OPUS_MS // 1000
    opus: list[bytes] = []
    for index in range(round(seconds * 1000 / OPUS_MS)):
        t = (np.arange(samples) + index * samples) / RATE
        tone = (0.3 * 32767 * np.sin(2 * np.pi * TONE * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = RATE, index * samples
        opus += [bytes(p) for p in audio.encode(frame)]
    # The encoder's own times lag by its look-ahead; the recorder stamps each packet 20 ms after the last.
    packets += [Encoded("audio", data, index * OPUS_MS, True) for index, data in enumerate(opus)]
    return sorted(packets, key=lambda p: (p.ms, p.kind))


def mux(path: Path, packets: list[Encoded], size: tuple[int, int] = SIZE, *, realtime: bool = False,
        cut: Path | None = None) -> None:
    """Write ``packets`` as the recorder does (paced to their times when ``realtime``), a stream per kind.

    ``cut`` receives a copy of the file as it is after the last packet and
    before the trailer: what a writer killed then leaves behind.
    """
    with av.open(str(path), "w", format="webm", container_options=MUXER_OPTIONS) as container:
        kinds = {p.kind for p in packets}
        streams: dict[str, av.stream.Stream] = {}
        if "video" in kinds:
            streams["video"] = container.add_mux_stream("vp8", width=size[0], height=size[1])
        if "audio" in kinds:
            streams["audio"] = container.add_stream("libopus", rate=RATE, layout="stereo")
        start = time.monotonic()
        for item in packets:
            if realtime:
                time.sleep(max(0.0, start + item.ms / 1000 - time.monotonic()))
            packet = av.Packet(item.data)
            packet.stream = streams[item.kind]
            packet.pts = packet.dts = item.ms
            packet.time_base = Fraction(1, 1000)
            packet.is_keyframe = item.keyframe
            if item.kind == "audio":
                packet.duration = OPUS_MS
            container.mux(packet)
        if cut is not None:
            shutil.copyfile(path, cut)


def write_webm(path: Path, seconds: float, colours: list[Colour], size: tuple[int, int] = SIZE) -> Path:
    """A finished clip (trailer, cues, duration) at ``path``."""
    mux(path, encode(seconds, colours, size), size)
    return path


def write_cut(path: Path, seconds: float, colours: list[Colour]) -> Path:
    """A clip at ``path`` as a writer killed after its last packet leaves it: no trailer, cues or duration."""
    mux(path.with_suffix(".finished.webm"), encode(seconds, colours), cut=path)
    path.with_suffix(".finished.webm").unlink()
    return path


@dataclass(frozen=True)
class Picture:
    time: float
    rgb: Colour
    keyframe: bool


def pictures(path: Path) -> list[Picture]:
    """Every decoded picture of ``path``: its time, mean colour, and whether it is a keyframe."""
    out: list[Picture] = []
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            for frame in packet.decode():
                assert isinstance(frame, av.VideoFrame) and frame.time is not None
                out.append(Picture(float(frame.time), mean_rgb(frame), frame.key_frame))
    return out


def mean_rgb(frame: av.VideoFrame) -> Colour:
    """The mean colour of a picture, over a small copy of it (the pictures here are plain colours)."""
    mean = frame.reformat(width=32, height=24, format="rgb24").to_ndarray().reshape(-1, 3).mean(axis=0)
    return int(mean[0]), int(mean[1]), int(mean[2])


def near(rgb: Colour, expected: Colour, tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, expected, strict=True))


def audio(path: Path) -> np.ndarray:
    """The decoded sound of ``path`` as mono float samples at 48 kHz."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            assert isinstance(frame, av.AudioFrame)
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
    return np.concatenate(chunks)


def peak_hz(samples: np.ndarray) -> float:
    """The strongest frequency of ``samples`` (48 kHz)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(spectrum.argmax())])


MATROSKA = {0x114D9B74: "SeekHead", 0x1549A966: "Info", 0x1654AE6B: "Tracks", 0x1F43B675: "Cluster",
            0x1C53BB6B: "Cues", 0x1254C367: "Tags", 0xEC: "Void"}


def segment_children(path: Path) -> list[str]:
    """The top-level elements of a WebM's segment, in file order (an unknown size runs to the end of the file)."""
    data = path.read_bytes()
    _, at = _vint(data, 0, marker=True)  # the EBML header
    size, at = _vint(data, at, marker=False)
    segment, at = _vint(data, at + size, marker=True)
    assert segment == 0x18538067
    size, at = _vint(data, at, marker=False)
    end = min(len(data), at + size)
    names = []
    while at < end:
        element, at = _vint(data, at, marker=True)
        length, at = _vint(data, at, marker=False)
        names.append(MATROSKA.get(element, hex(element)))
        at += length
    return names


def _vint(data: bytes, at: int, *, marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at ``at`` (an element id keeps its length marker) and where it ends."""
    length = 9 - data[at].bit_length()
    value = int.from_bytes(data[at:at + length], "big")
    return (value if marker else value & ((1 << 7 * length) - 1)), at + length


def boxes(path: Path) -> list[str]:
    """The top-level boxes of an MP4, in file order."""
    data = path.read_bytes()
    names, at = [], 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        names.append(data[at + 4:at + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[at + 8:at + 16], "big")
        at += size or len(data)
    return names


if __name__ == "__main__":
    target, length = Path(sys.argv[1]), float(sys.argv[2])
    clip = encode(length, [RED, GREEN])
    print("ready", flush=True)
    mux(target, clip, realtime=True)
