"""The points' alarms and connection tests, kept: a subscriber of every session's events.

It runs inside the room's lock (subscribers are awaited by ``publish``),
so it only queues; one writer task writes the queue in order and, while
the database is away, waits and tries again (the board goes on from
memory meanwhile). Rows are keyed by the event's id: a resent event is
kept once. Beyond ``limit`` waiting events the oldest are dropped (a
counted loss, not the server's memory).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from datetime import datetime

from sqlalchemy import desc, select
from sqlalchemy.exc import IntegrityError

from server.live import events as ev
from server.live.bus import EventBus, Subscription, dispatcher
from server.logs import Throttled
from server.storage.db import Database
from server.storage.models import QualityEvent

log = logging.getLogger(__name__)
_throttled = Throttled(log)

Kept = ev.QualityAlarm | ev.PrecheckDone


class QualityStore:
    def __init__(self, database: Database, *, retry_seconds: float = 2.0, limit: int = 10_000) -> None:
        self.database = database
        self.retry_seconds = retry_seconds
        self.handle = dispatcher({ev.QualityAlarm: self._queue, ev.PrecheckDone: self._queue})
        self._waiting: deque[Kept] = deque()
        self._limit = limit
        self.dropped = 0
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    def subscribe(self, bus: EventBus) -> Subscription:
        return bus.subscribe(self.handle, name="quality-store")

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def _queue(self, event: Kept) -> None:
        if event.session_id is None:
            return
        if len(self._waiting) >= self._limit:
            self._waiting.popleft()
            self.dropped += 1
        self._waiting.append(event)
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="quality-store")

    async def _write(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(self._waiting)[:200]
            try:
                await self._insert(batch)
            except Exception as exc:  # noqa: BLE001 - the database is away: try again later
                _throttled.warning("write", "quality events: the database refused a write (%s); retrying",
                                   type(exc).__name__)
                await asyncio.sleep(self.retry_seconds)
                continue
            for _ in batch:
                self._waiting.popleft()

    async def _insert(self, batch: list[Kept]) -> None:
        async with self.database.session() as db:
            known = set(await db.scalars(select(QualityEvent.event_id).where(
                QualityEvent.event_id.in_([event.id for event in batch]))))
            for event in batch:
                if event.id not in known:
                    db.add(_row(event))
            try:
                await db.commit()
            except IntegrityError:
                # Another writer (a relay resending) kept one meanwhile: one at a time, the rest kept.
                await db.rollback()
                for event in batch:
                    async with self.database.session() as single:
                        if await single.get(QualityEvent, event.id) is None:
                            single.add(_row(event))
                            await single.commit()

    async def drain(self, timeout: float) -> bool:
        """Wait until what is queued is written (at shutdown); False if it could not be."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._waiting and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return not self._waiting

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass

    # reading --------------------------------------------------------------------------------

    async def prechecks(self, session_id: int) -> list[ev.PrecheckDone]:
        """Each point's latest connection test for the session, as events."""
        async with self.database.session() as db:
            rows = await db.scalars(select(QualityEvent).where(
                QualityEvent.session_id == session_id, QualityEvent.kind == "precheck").order_by(QualityEvent.at))
            latest: dict[int, QualityEvent] = {}
            for row in rows:
                latest[row.bridge_point_id] = row
        return [ev.make(ev.PrecheckDone, id=row.event_id, session_id=row.session_id, at=row.at,
                        point_id=row.bridge_point_id, user_id=row.user_id or 0, ok=row.state == "ok",
                        rtt_ms=row.rtt_ms, bitrate_kbps=row.bitrate_kbps, video_frames=row.video_frames or 0,
                        audio=bool(row.audio), detail=row.detail) for row in latest.values()]

    async def alarms(self, session_id: int, limit: int = 100) -> list[dict[str, object]]:
        """The session's alarms, newest first."""
        async with self.database.session() as db:
            rows = list(await db.scalars(select(QualityEvent).where(
                QualityEvent.session_id == session_id, QualityEvent.kind == "alarm").order_by(
                desc(QualityEvent.at)).limit(limit)))
        return [{"id": row.event_id, "at": _iso(row.at), "bridge_point": row.bridge_point_id, "alarm": row.state,
                 "reasons": [r for r in row.reasons.split(",") if r], "rtt_ms": row.rtt_ms,
                 "loss_pct": row.loss_pct, "jitter_ms": row.jitter_ms} for row in rows]


def _iso(at: datetime) -> str:
    return at.isoformat()


def _row(event: Kept) -> QualityEvent:
    assert event.session_id is not None
    if isinstance(event, ev.QualityAlarm):
        return QualityEvent(event_id=event.id, session_id=event.session_id, bridge_point_id=event.point_id,
                            at=event.at, kind="alarm", state=event.alarm, reasons=",".join(event.reasons)[:200],
                            rtt_ms=event.rtt_ms, loss_pct=event.loss_pct, jitter_ms=event.jitter_ms, detail="")
    return QualityEvent(event_id=event.id, session_id=event.session_id, bridge_point_id=event.point_id, at=event.at,
                        kind="precheck", state="ok" if event.ok else "failed", reasons="", rtt_ms=event.rtt_ms,
                        bitrate_kbps=event.bitrate_kbps, video_frames=event.video_frames, audio=event.audio,
                        detail=event.detail[:200], user_id=event.user_id or None)
