"""Recording files: the one way from a stored path to a file, and what is done to whole files.

The recorder writes WebM as it goes, so a writer killed mid-session leaves a
file without its trailer: no segment size, no cues, no duration. Players
still play it, but Chromium reports its length as ``Infinity``. Such a file
is remuxed (every packet copied, never decoded: a fraction of a second for an
hour) into one that knows its duration and has cues, and the parts of a
session cut by restarts are remuxed end to end into one file the same way.
Every rewrite goes to a temporary name first and is renamed over the target
once complete and on disk, so a crash never leaves a half-written file under
a name the catalogue knows.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote

import av
from av.container import InputContainer, OutputContainer
from av.stream import Stream

CHUNK = 1024 * 1024
MILLISECONDS = Fraction(1, 1000)
# The recorder's muxer options without flush_packets: a rewrite is complete or thrown away, never cut.
MUXER_OPTIONS = {"cluster_time_limit": "500", "cluster_size_limit": "2000000", "write_crc32": "0"}
# The program feed's codecs: parts of one recording can be joined without decoding only if they share them.
CODECS = {"video": ("vp8", "h264"), "audio": ("opus",)}
# The container each suffix is written as (WebM holds VP8; H.264 goes into Matroska).
FORMATS = {".webm": "webm", ".mkv": "matroska"}
# How reading a file cut by a kill can end: in its last packet, written only in part.
CUT = (av.error.InvalidDataError, av.error.EOFError)


# Stored paths are short ("<session>/part-3.webm"); a long one is tampering.
MAX_RELATIVE = 300


class UnsafePath(ValueError):
    """A stored path that does not lead to a file inside the recordings folder."""


class EmptyRecording(ValueError):
    """A recording file without a single packet (its writer was stopped before the first one)."""


@dataclass(frozen=True)
class MediaInfo:
    """What a recording file holds, as the catalogue and the player need it."""

    duration_seconds: float
    has_video: bool
    has_audio: bool
    width: int  # 0 without video
    height: int
    video_codec: str | None
    needs_repair: bool  # the container does not know its duration: a writer was killed


def safe_path(root: Path, relative: str) -> Path:
    """``relative`` resolved inside ``root``; UnsafePath for anything that could lead elsewhere.

    The catalogue's paths are written by the server, so anything unusual in
    one (a ``..``, an absolute path, an encoded separator, a symlink out of
    the folder) means tampering and is refused rather than cleaned up.
    """
    if len(relative) > MAX_RELATIVE:
        raise UnsafePath(f"a stored path of {len(relative)} characters")
    for candidate in (relative, unquote(relative)):
        if not candidate or "\x00" in candidate:
            raise UnsafePath(f"{relative!r}: empty, or holds a NUL")
        if candidate.startswith(("/", "\\")):
            raise UnsafePath(f"{relative!r} is absolute")
        if ".." in re.split(r"[/\\]", candidate):
            raise UnsafePath(f"{relative!r} climbs out of its folder")
    base = root.resolve()
    try:
        path = (base / relative).resolve()
    except OSError as exc:  # a name too long for the file system, a symlink loop
        raise UnsafePath(f"{relative!r} cannot be resolved: {exc.strerror}") from None
    if path == base or not path.is_relative_to(base):
        raise UnsafePath(f"{relative!r} leads outside the recordings folder")
    return path


def safe_file(root: Path, relative: str) -> Path | None:
    """:func:`safe_path`, and a regular file there (not a folder, a FIFO, a device); None if there is none.

    UnsafePath as for :func:`safe_path`. What is served or deleted goes through here.
    """
    path = safe_path(root, relative)
    try:
        return path if stat.S_ISREG(path.stat().st_mode) else None
    except OSError:
        return None


def probe(path: Path) -> MediaInfo:
    """What ``path`` holds; a file whose writer was killed is measured by its packets (demuxed, not decoded)."""
    with _open(path) as container:
        return _info(container)


def repair(path: Path) -> MediaInfo:
    """Give a killed file its duration and cues, in place; a file that has them is left untouched."""
    with _open(path) as container:
        if container.duration is not None:
            return _info(container)
    with _rewrite(path, path.with_suffix(".repairing" + path.suffix)) as output, _open(path) as container:
        streams = {s.index: output.add_stream_from_template(s) for s in _media_streams(container)}
        packets = 0
        for packet in _packets(container):
            packet.stream = streams[packet.stream_index]
            output.mux(packet)
            packets += 1
        if not packets:
            raise EmptyRecording(f"{path} holds no packet")
    return probe(path)


def join(parts: list[Path], out: Path) -> MediaInfo:
    """The parts of one recording as one file, each starting where the one before ended.

    Only timestamps change: each part is shifted as a whole (its audio and
    video stay in step) to start at the end of the longer track of the
    previous one, so a restart leaves no gap in the timeline; within a
    stream, time never goes back.
    """
    if not parts:
        raise ValueError("no part to join")
    with _rewrite(out, out.with_suffix(".joining" + out.suffix)) as output:
        streams: dict[str, Stream] = {}
        codecs: dict[str, str] = {}
        starts: list[tuple[Path, int]] = []
        for part in parts:
            try:
                with _open(part) as container:
                    media = _media_streams(container)
                    kinds = [s.type for s in media]
                    if len(set(kinds)) < len(kinds) or any(s.codec_context.name not in CODECS[s.type] for s in media):
                        raise ValueError(f"{part}: only one video (VP8 or H.264) and one Opus audio stream "
                                         "can be joined")
                    for stream in media:
                        if codecs.setdefault(stream.type, stream.codec_context.name) != stream.codec_context.name:
                            raise ValueError(f"{part}: its {stream.type} is {stream.codec_context.name}, "
                                             f"the parts before it {codecs[stream.type]}")
                        if stream.type not in streams:
                            streams[stream.type] = output.add_stream_from_template(stream)
                    starts.append((part, _first_ms(container)))
            except EmptyRecording:
                continue  # a part stopped before its first packet adds nothing
        end = 0
        last = {kind: -1 for kind in streams}
        for part, start in starts:
            shift = end - start
            with _open(part) as container:
                kinds, scales = {s.index: s.type for s in container.streams}, _to_ms(container)
                for packet in _packets(container):
                    assert packet.pts is not None
                    kind, scale = kinds[packet.stream_index], scales[packet.stream_index]
                    pts = max(round(packet.pts * scale) + shift, last[kind] + 1)
                    duration = round((packet.duration or 0) * scale)
                    packet.stream, packet.time_base = streams[kind], MILLISECONDS
                    packet.pts = packet.dts = pts
                    packet.duration = duration
                    output.mux(packet)
                    last[kind] = pts
                    end = max(end, pts + duration)
        if max(last.values(), default=-1) < 0:
            raise EmptyRecording(f"{', '.join(map(str, parts))}: no packet")
    return probe(out)


def sha256_of(path: Path) -> str:
    """The file's SHA-256 in hex, read in 1 MiB chunks (recordings run to gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _open(path: Path) -> Iterator[InputContainer]:
    """``path`` for reading; a header without packets (or nothing at all) is an EmptyRecording."""
    if path.stat().st_size == 0:
        raise EmptyRecording(f"{path} is empty")
    try:
        container = av.open(str(path))
    except av.error.EOFError:
        raise EmptyRecording(f"{path} ends before its first packet") from None
    with container:
        yield container


@contextmanager
def _rewrite(target: Path, temporary: Path) -> Iterator[OutputContainer]:
    """A file (WebM or Matroska, by ``target``'s suffix) written at ``temporary`` and, once complete
    and synced, renamed to ``target``."""
    try:
        with av.open(str(temporary), "w", format=FORMATS.get(target.suffix, "webm"),
                     container_options=MUXER_OPTIONS) as output:
            yield output
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _info(container: InputContainer) -> MediaInfo:
    """What ``container`` holds; without a known duration, the span of its packets."""
    video = container.streams.video[0] if container.streams.video else None
    if container.duration is not None:
        duration = container.duration / av.time_base
    else:
        first, end = _span(container)
        duration = max(0.0, end - first)
    return MediaInfo(
        duration_seconds=duration, has_video=video is not None, has_audio=bool(container.streams.audio),
        width=video.codec_context.width if video else 0, height=video.codec_context.height if video else 0,
        video_codec=video.codec_context.name if video else None, needs_repair=container.duration is None)


def _media_streams(container: InputContainer) -> list[Stream]:
    """The file's streams, all of them video or audio (anything else was not written by the recorder)."""
    streams = list(container.streams)
    if other := [s for s in streams if s.type not in CODECS]:
        raise ValueError(f"{container.name}: a {other[0].type} stream, a recording holds only video and audio")
    return streams


def _packets(container: InputContainer) -> Iterator[av.Packet]:
    """Every packet with a time, in file order, up to where a kill cut the file."""
    try:
        for packet in container.demux():
            if packet.pts is not None:
                yield packet
    except CUT:
        return


def _span(container: InputContainer) -> tuple[float, float]:
    """The first time and the end of the last packet, in seconds, over every stream.

    Counted in each stream's own units and converted once at the end: a
    Fraction per packet would cost more than the demuxing.
    """
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    for packet in _packets(container):
        assert packet.pts is not None
        index = packet.stream_index
        starts[index] = min(starts.get(index, packet.pts), packet.pts)
        ends[index] = max(ends.get(index, 0), packet.pts + (packet.duration or 0))
    if not starts:
        return 0.0, 0.0
    bases = {stream.index: stream.time_base or MILLISECONDS for stream in container.streams}
    return (min(float(starts[i] * bases[i]) for i in starts), max(float(ends[i] * bases[i]) for i in ends))


def _first_ms(container: InputContainer) -> int:
    """The earliest time of any stream, from the first packet of each (the file is interleaved)."""
    scales = _to_ms(container)
    firsts: dict[int, int] = {}
    for packet in _packets(container):
        assert packet.pts is not None
        firsts.setdefault(packet.stream_index, round(packet.pts * scales[packet.stream_index]))
        if len(firsts) == len(container.streams):
            break
    return min(firsts.values(), default=0)


def _to_ms(container: InputContainer) -> dict[int, float]:
    """Per stream, the factor from its time base to milliseconds."""
    return {stream.index: float((stream.time_base or MILLISECONDS) / MILLISECONDS) for stream in container.streams}
