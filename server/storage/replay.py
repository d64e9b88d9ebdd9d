"""Replay credit in the database: each member's watched ranges per recording, and their place in attendance.

The rules are ``server.attendance.replay`` (pure); this keeps the ledger
(one row per member and recording) and maps what was watched back onto the
session's clock for the attendance report, where live and replay are
counted separately and their union toward the credit rule.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.attendance import replay
from server.attendance.intervals import Interval
from server.storage.models import Recording, RecordingPart, ReplayProgress, utcnow


@dataclass(frozen=True)
class Reported:
    credited_seconds: float
    added_seconds: float
    refused_seconds: float
    position_seconds: float


async def report(db: AsyncSession, recording: Recording, user_id: int, claimed: list[Interval],
                 position: float | None, now: datetime | None = None) -> Reported:
    """Add one report of the player to the member's ledger (the caller retries on a concurrent first report)."""
    now = now or utcnow()
    row = await db.get(ReplayProgress, (recording.id, user_id), with_for_update=True)
    if row is None:
        row = ReplayProgress(recording_id=recording.id, user_id=user_id, ranges="[]", credited_seconds=0.0,
                             position_seconds=0.0, updated_at=now)
        db.add(row)
    ledger = replay.ledger_from_json(row.ranges)
    ledger = replay.Ledger(ledger.ranges, row.last_report_at.timestamp() if row.last_report_at else None)
    accepted = replay.accept(ledger, claimed, now.timestamp())
    row.ranges = replay.ledger_to_json(accepted.ledger)
    row.credited_seconds = round(accepted.ledger.credited_seconds, 3)
    row.last_report_at = now if row.last_report_at is None or now > row.last_report_at else row.last_report_at
    if position is not None:
        row.position_seconds = round(min(max(0.0, position), recording.duration_seconds), 3)
    row.updated_at = now
    await db.flush()
    return Reported(row.credited_seconds, accepted.added_seconds, accepted.refused_seconds, row.position_seconds)


async def progress_of(db: AsyncSession, user_id: int, recording_ids: list[int]) -> dict[int, ReplayProgress]:
    if not recording_ids:
        return {}
    rows = await db.scalars(select(ReplayProgress).where(
        ReplayProgress.user_id == user_id, ReplayProgress.recording_id.in_(recording_ids)))
    return {row.recording_id: row for row in rows}


async def session_replays(db: AsyncSession, session_id: int) -> dict[int, list[Interval]]:
    """user id -> the session-clock intervals whose recording they watched (for the credit rule)."""
    recording_id = await db.scalar(select(Recording.id).where(Recording.session_id == session_id))
    if recording_id is None:
        return {}
    parts = [replay.Part(p.offset_seconds, p.duration_seconds, p.started_at.timestamp())
             for p in await db.scalars(select(RecordingPart).where(RecordingPart.recording_id == recording_id)
                                       .order_by(RecordingPart.number))]
    found: dict[int, list[Interval]] = defaultdict(list)
    rows = await db.execute(select(ReplayProgress.user_id, ReplayProgress.ranges)
                            .where(ReplayProgress.recording_id == recording_id))
    for user_id, ranges in rows:
        found[user_id] = replay.to_session_clock(replay.ledger_from_json(ranges).ranges, parts)
    return dict(found)
