"""Recording files: the one way from a stored path to a file, and what is done to whole files.

* :func:`safe_path` — a path kept in the catalogue back to a file inside the
  recordings folder, or :class:`UnsafePath` (``..``, absolute, encoded, or a
  symlink leading out);
* :func:`probe` — duration and streams, also of a file whose writer was
  killed (no trailer: its duration is read from its last packet);
* :func:`repair` — remux a killed file so it knows its duration and has cues
  (Chromium then seeks in it), copying every packet, never decoding;
* :func:`join` — the parts of a recording as one file, end to end;
* :func:`sha256_of`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import av

CHUNK = 1024 * 1024
MUXER_OPTIONS = {"cluster_time_limit": "500", "cluster_size_limit": "2000000", "write_crc32": "0"}


class UnsafePath(ValueError):
    """A stored path that does not lead to a file inside the recordings folder."""


class EmptyRecording(ValueError):
    """A file without a single packet."""


def safe_path(root: Path, relative: str) -> Path:
    """``relative`` resolved inside ``root``; UnsafePath for anything that could lead elsewhere."""
    if not relative or "\x00" in relative:
        raise UnsafePath("an empty path, or one with a NUL")
    for candidate in (relative, unquote(relative)):
        if candidate.startswith(("/", "\\")) or Path(candidate).is_absolute() or "\\" in candidate:
            raise UnsafePath(f"{relative!r} is absolute")
        if any(part == ".." for part in candidate.split("/")):
            raise UnsafePath(f"{relative!r} climbs out of its folder")
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or path == base:
        raise UnsafePath(f"{relative!r} leads outside the recordings folder")
    return path


@dataclass(frozen=True)
class MediaInfo:
    duration_seconds: float
    has_video: bool
    has_audio: bool
    width: int
    height: int
    video_codec: str | None
    needs_repair: bool


def probe(path: Path) -> MediaInfo:
    """What the file holds; for a file without a known duration, the span of its packets."""
    with av.open(str(path)) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        needs_repair = container.duration is None
        if not needs_repair:
            duration = container.duration / av.time_base
        else:
            first, last = _span(container)
            duration = max(0.0, last - first)
        return MediaInfo(duration, video is not None, audio is not None, video.codec_context.width if video else 0,
                         video.codec_context.height if video else 0, video.codec_context.name if video else None,
                         needs_repair)


def _span(container: av.container.InputContainer) -> tuple[float, float]:
    first: float | None = None
    last = 0.0
    try:
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            start = float(packet.pts * packet.time_base)
            end = start + float((packet.duration or 0) * packet.time_base)
            first = start if first is None else min(first, start)
            last = max(last, end)
    except (av.error.InvalidDataError, av.error.EOFError):
        pass  # a last packet cut short by the kill
    return (first or 0.0), last


def _copy(sources: list[Path], out: Path) -> None:
    """Remux ``sources`` end to end into ``out`` (through a temporary name)."""
    temporary = out.with_name(out.stem + ".writing" + out.suffix)
    packets = 0
    with av.open(str(temporary), "w", format="webm", container_options=MUXER_OPTIONS) as output:
        streams: dict[str, av.stream.Stream] = {}
        offsets = {"video": 0, "audio": 0}
        for source in sources:
            with av.open(str(source)) as container:
                for stream in container.streams:
                    if stream.type in ("video", "audio") and stream.type not in streams:
                        streams[stream.type] = output.add_stream_from_template(stream)
                ends = dict(offsets)
                try:
                    for packet in container.demux():
                        kind = packet.stream.type
                        if packet.pts is None or kind not in streams:
                            continue
                        # WebM counts in milliseconds, every stream alike.
                        packet.pts = packet.dts = packet.pts + offsets[kind]
                        packet.stream = streams[kind]
                        output.mux(packet)
                        packets += 1
                        ends[kind] = max(ends[kind], packet.pts + (packet.duration or 1))
                except (av.error.InvalidDataError, av.error.EOFError):
                    pass
                # The next part starts where the longer track of this one ended.
                offsets = {kind: max(ends.values()) for kind in offsets}
    if packets == 0:
        temporary.unlink(missing_ok=True)
        raise EmptyRecording(f"{sources[0]} holds no packet")
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, out)


def repair(path: Path) -> MediaInfo:
    """Give a killed file its duration and cues, in place; a sound file is left as it is."""
    info = probe(path)
    if not info.needs_repair:
        return info
    _copy([path], path)
    return probe(path)


def join(parts: list[Path], out: Path) -> MediaInfo:
    """The parts, end to end, as one file (no decoding)."""
    _copy(parts, out)
    return probe(out)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
