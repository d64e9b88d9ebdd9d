"""A recording made without a live session: encoded VP8 and Opus written by the recorder's own writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from server.recording.writer import PartWriter
from server.storage import recordings as catalogue
from server.storage.db import Database
from server.storage.models import JobStatus, Recording, RecordingStatus, Session
from server.live.lifecycle import SessionStatus


# Encoding is what costs (a second or two per clip): each distinct clip is made once per test run.
_MADE: dict[tuple[object, ...], bytes] = {}


def write_webm(path: Path, seconds: float, colours: list[tuple[int, int, int]], tone: float = 440.0,
               size: tuple[int, int] = (320, 240)) -> None:
    """``seconds`` of 30 fps video cycling through ``colours`` (equal shares) and a tone, as the recorder writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = (seconds, tuple(colours), tone, size)
    if key not in _MADE:
        _encode(path, seconds, colours, tone, size)
        _MADE[key] = path.read_bytes()
    path.write_bytes(_MADE[key])


def _encode(path: Path, seconds: float, colours: list[tuple[int, int, int]], tone: float,
            size: tuple[int, int]) -> None:
    video = av.CodecContext.create("libvpx", "w")
    video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
    video.time_base = Fraction(1, 30)
    video.gop_size = 30
    video.options = {"deadline": "realtime", "cpu-used": "8"}
    audio = av.CodecContext.create("libopus", "w")
    audio.sample_rate, audio.layout, audio.format, audio.time_base = 48000, "stereo", "s16", Fraction(1, 48000)
    packets: list[tuple[str, bytes, int, bool]] = []
    frames = int(seconds * 30)
    for index in range(frames):
        image = np.zeros((size[1], size[0], 3), np.uint8)
        image[:, :] = colours[min(len(colours) - 1, index * len(colours) // frames)]
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        for packet in video.encode(frame):
            packets.append(("video", bytes(packet), round(packet.pts * 1000 / 30), bool(packet.is_keyframe)))
    for index in range(int(seconds * 50)):
        t = (np.arange(960) + index * 960) / 48000
        samples = (0.3 * 32767 * np.sin(2 * np.pi * tone * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(samples, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, index * 960
        for packet in audio.encode(frame):
            packets.append(("audio", bytes(packet), index * 20, True))
    packets.sort(key=lambda item: (item[2], item[0] == "audio"))
    writer = PartWriter(path, size)
    for item in packets:
        writer.put(*item)
    stats = writer.close()
    assert not stats.error and not stats.dropped


async def make_recording(database: Database, root: Path, session_id: int, seconds: float = 6.0,
                         colours: list[tuple[int, int, int]] | None = None,
                         chapters: list[tuple[float, str]] | None = None) -> int:
    """An ended session's finished recording of ``seconds`` (the session ends now, live for as long)."""
    relative = f"{session_id}/part-1.webm"
    write_webm(root / relative, seconds, colours or [(220, 30, 30), (30, 200, 60)])
    ended = datetime.now(UTC)
    started = ended - timedelta(seconds=seconds)
    async with database.session() as db:
        session = await db.get(Session, session_id)
        assert session is not None
        session.status, session.actual_start, session.actual_end = SessionStatus.ENDED, started, ended
        opened = await catalogue.open_part(db, session_id, "hub", relative, started)
        await catalogue.close_part(db, opened.part_id, status=catalogue.PART_CLOSED, duration=seconds,
                                   size=(root / relative).stat().st_size, ended_at=ended)
        for index, (at, key) in enumerate(chapters or []):
            await catalogue.add_chapter(db, opened.recording_id, at, key, f"chapter-{session_id}-{index}")
        recording = await db.get(Recording, opened.recording_id)
        assert recording is not None
        recording.status, recording.file, recording.ended_at = RecordingStatus.READY, relative, ended
        recording.duration_seconds = seconds
        recording.size_bytes = (root / relative).stat().st_size
        recording.mp4_status = JobStatus.PENDING
        return recording.id
