"""The catalogue of recordings: rows for recordings, their parts and chapters.

Files live under the recordings folder (``Settings.recordings_dir``); rows
keep paths relative to it, and only :func:`server.recording.files.safe_path`
turns them back into files. A session has at most one recording; a server
that restarts mid-session adds a part to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.storage.models import (
    BridgePoint,
    JobStatus,
    Recording,
    RecordingAudit,
    RecordingChapter,
    RecordingPart,
    RecordingStatus,
    User,
    utcnow,
)
from server.validation import digits

PART_RECORDING = "recording"
PART_CLOSED = "closed"  # written to its end (the session ended, or the server stopped cleanly)
PART_INTERRUPTED = "interrupted"  # cut by a crash, repaired on the next start


@dataclass(frozen=True)
class OpenedPart:
    recording_id: int
    part_id: int
    number: int
    offset_seconds: float


async def open_part(db: AsyncSession, session_id: int, node: str, file: str, started_at: datetime) -> OpenedPart:
    """A new part of the session's recording (the recording is made with the first)."""
    recording = await db.scalar(select(Recording).where(Recording.session_id == session_id).with_for_update())
    if recording is None:
        recording = Recording(session_id=session_id, status=RecordingStatus.RECORDING, node=node,
                              started_at=started_at)
        db.add(recording)
        try:
            async with db.begin_nested():
                await db.flush()
        except IntegrityError:  # another writer made it meanwhile
            recording = await db.scalar(select(Recording).where(Recording.session_id == session_id))
            assert recording is not None
    recording.status = RecordingStatus.RECORDING
    recording.node = node
    recording.ended_at = None
    recording.mp4_status = JobStatus.WAITING
    recording.mp4_progress = 0.0
    recording.mp4_attempts = 0
    recording.mp4_error = ""
    number, offset = (await db.execute(
        select(func.coalesce(func.max(RecordingPart.number), 0), func.coalesce(func.sum(RecordingPart.duration_seconds), 0.0))
        .where(RecordingPart.recording_id == recording.id))).one()
    part = RecordingPart(recording_id=recording.id, number=number + 1, file=file, started_at=started_at,
                         offset_seconds=float(offset), status=PART_RECORDING, node=node)
    db.add(part)
    await db.flush()
    return OpenedPart(recording.id, part.id, part.number, part.offset_seconds)


async def close_part(db: AsyncSession, part_id: int, *, status: str, duration: float, size: int,
                     ended_at: datetime | None = None) -> None:
    await db.execute(update(RecordingPart).where(RecordingPart.id == part_id).values(
        status=status, duration_seconds=duration, size_bytes=size, ended_at=ended_at or utcnow()))


async def parts(db: AsyncSession, recording_id: int) -> list[RecordingPart]:
    return list(await db.scalars(select(RecordingPart).where(RecordingPart.recording_id == recording_id)
                                 .order_by(RecordingPart.number)))


async def open_parts_of(db: AsyncSession, node: str) -> list[RecordingPart]:
    """Parts this node was writing when it stopped without closing them (a crash)."""
    return list(await db.scalars(select(RecordingPart).where(
        RecordingPart.node == node, RecordingPart.status == PART_RECORDING).order_by(RecordingPart.id)))


async def unfinished(db: AsyncSession, node: str) -> list[Recording]:
    """This node's recordings still marked as being written."""
    return list(await db.scalars(select(Recording).where(
        Recording.node == node, Recording.status == RecordingStatus.RECORDING)))


async def add_chapter(db: AsyncSession, recording_id: int, at_seconds: float, key: str, event_id: str) -> None:
    """The picture on air changed to ``key``'s at ``at_seconds``: a chapter, stored once per event."""
    kind, name = await _who(db, key)
    db.add(RecordingChapter(recording_id=recording_id, at_seconds=max(0.0, at_seconds), participant_key=key,
                            kind=kind, name=name, event_id=event_id))
    try:
        async with db.begin_nested():
            await db.flush()
    except IntegrityError:
        pass  # delivered before


async def _who(db: AsyncSession, key: str) -> tuple[str, str]:
    """A hall (by its point's name) or the speaker (by their name) — only they publish."""
    prefix, _, raw = key.partition(":")
    number = digits(raw)
    if prefix == "point" and number is not None:
        point = await db.get(BridgePoint, number)
        return "hall", point.name if point else key
    user = await db.get(User, number) if prefix == "user" and number is not None else None
    return "speaker", user.full_name if user else key


async def chapters(db: AsyncSession, recording_ids: list[int]) -> dict[int, list[RecordingChapter]]:
    """Each recording's chapters in order, consecutive repeats of one picture merged."""
    found: dict[int, list[RecordingChapter]] = {rid: [] for rid in recording_ids}
    if not recording_ids:
        return found
    rows = await db.scalars(select(RecordingChapter).where(RecordingChapter.recording_id.in_(recording_ids))
                            .order_by(RecordingChapter.recording_id, RecordingChapter.at_seconds,
                                      RecordingChapter.id))
    for chapter in rows:
        same = found[chapter.recording_id]
        if same and same[-1].participant_key == chapter.participant_key:
            continue
        same.append(chapter)
    return found


async def part_counts(db: AsyncSession, recording_ids: list[int]) -> dict[int, int]:
    if not recording_ids:
        return {}
    rows = await db.execute(select(RecordingPart.recording_id, func.count()).where(
        RecordingPart.recording_id.in_(recording_ids), RecordingPart.size_bytes > 0).group_by(RecordingPart.recording_id))
    return {recording_id: count for recording_id, count in rows}


async def of_session(db: AsyncSession, session_id: int) -> list[Recording]:
    return list(await db.scalars(select(Recording).where(Recording.session_id == session_id)
                                 .order_by(Recording.id)))


async def audit(db: AsyncSession, recording_id: int, actor_id: int | None, action: str, reason: str) -> None:
    db.add(RecordingAudit(recording_id=recording_id, actor_id=actor_id, action=action, reason=reason))
