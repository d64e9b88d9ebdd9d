"""What a live session keeps in the database: its status changes and every floor grant."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from server.collation import sorted_by_name
from server.live import events as ev
from server.live.bus import EventBus, Subscription, dispatcher
from server.live.lifecycle import SessionAction
from server.live.store import SessionInfo
from server.storage import sessions as session_store
from server.logs import Throttled
from server.storage.db import Database, database_unavailable
from server.storage.models import BridgePoint, FloorGrant

log = logging.getLogger(__name__)
_throttled = Throttled(log)


async def load_info(database: Database, session_id: int) -> SessionInfo:
    """The session as a live room needs it: status, speaker and invited points by name."""
    async with database.session() as db:
        session = await session_store.get_session(db, session_id)
        points = sorted_by_name(await db.scalars(
            select(BridgePoint).where(BridgePoint.id.in_(session.invited_point_ids))))
        return SessionInfo(id=session.id, title=session.title, speaker_id=session.speaker_id, status=session.status,
                           invited={point.id: point.name for point in points}, actual_start=session.actual_start,
                           scheduled_start=session.scheduled_start, scheduled_end=session.scheduled_end,
                           record=session.record)


class DatabaseLiveStore:
    """The live room's store on the application database (``server.live.store.LiveStore``)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def load(self, session_id: int) -> SessionInfo:
        return await load_info(self.database, session_id)

    async def transition(self, session_id: int, action: SessionAction) -> SessionInfo:
        async with self.database.session() as db:
            await session_store.apply_action(db, session_id, action)
        return await load_info(self.database, session_id)


class FloorGrantStore:
    """A subscriber of every session's events that keeps each floor grant: talk time, chapters later.

    Idempotent: a grant is keyed by its domain id, so a start delivered twice
    inserts once and an end applies only to a grant still open.

    It runs inside the room's lock (subscribers are awaited by ``publish``),
    so it must never wait long: a write gets ``write_timeout`` seconds, and a
    database that is away (refusing, or silent) makes the grant wait in
    memory, in order, retried until the database takes it. The lecture goes
    on meanwhile, and no talk time is lost.
    """

    def __init__(self, database: Database, *, write_timeout: float = 2.0, retry_seconds: float = 1.0,
                 limit: int = 100_000) -> None:
        self.database = database
        self.write_timeout = write_timeout
        self.retry_seconds = retry_seconds
        self.handle = dispatcher({ev.FloorGranted: self._handle, ev.FloorEnded: self._handle})
        self._waiting: deque[ev.FloorGranted | ev.FloorEnded] = deque(maxlen=limit)
        self._writer: asyncio.Task[None] | None = None

    def subscribe(self, bus: EventBus) -> Subscription:
        return bus.subscribe(self.handle, name="floor-grant-store")

    @property
    def waiting(self) -> int:
        """Grants and ends not yet in the database (an outage)."""
        return len(self._waiting)

    async def _handle(self, event: ev.FloorGranted | ev.FloorEnded) -> None:
        if self._waiting:
            self._waiting.append(event)  # behind what waits already: an end never lands before its grant
            return
        try:
            await asyncio.wait_for(self._write(event), self.write_timeout)
        except Exception as exc:
            if not (database_unavailable(exc) or isinstance(exc, TimeoutError)):
                raise
            _throttled.warning("away", "floor grants: the database did not take %s (%s); kept, retrying",
                               event.kind, type(exc).__name__)
            self._waiting.append(event)
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(self._retry(), name="floor-grant-writer")

    async def _retry(self) -> None:
        delay = self.retry_seconds
        while self._waiting:
            try:
                await asyncio.wait_for(self._write(self._waiting[0]), self.write_timeout)
            except Exception as exc:
                if not (database_unavailable(exc) or isinstance(exc, TimeoutError)):
                    log.exception("floor grants: %s could not be written; left out", self._waiting[0].kind)
                    self._waiting.popleft()
                    continue
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._waiting.popleft()
            delay = self.retry_seconds
        log.warning("floor grants: the database is back; what waited is written")

    async def drain(self, timeout: float) -> bool:
        """Wait (up to ``timeout``) for what waits to be written; True if nothing is left."""
        if self._writer is not None and not self._writer.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), timeout)
            except TimeoutError:
                pass
        return not self._waiting

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except (asyncio.CancelledError, Exception):
                pass
        if self._waiting:
            log.error("floor grants: %d change(s) not written at shutdown (the database was away)",
                      len(self._waiting))

    async def _write(self, event: ev.FloorGranted | ev.FloorEnded) -> None:
        if isinstance(event, ev.FloorGranted):
            await self._granted(event)
        else:
            await self._ended(event)

    async def _granted(self, event: ev.FloorGranted) -> None:
        limit = int(event.limit_seconds) if event.limit_seconds else None
        try:
            async with self.database.session() as db:
                db.add(FloorGrant(session_id=event.session_id, bridge_point_id=event.point_id, started_at=event.at,
                                  limit_seconds=limit, grant_key=event.grant_id))
        except IntegrityError:
            pass  # delivered before: already on record

    async def _ended(self, event: ev.FloorEnded) -> None:
        async with self.database.session() as db:
            grant = await db.scalar(select(FloorGrant).where(FloorGrant.grant_key == event.grant_id))
            if grant is not None and grant.ended_at is None:
                grant.ended_at = max(event.at, grant.started_at)
                grant.end_reason = event.reason

    async def grants(self, session_id: int) -> list[FloorGrant]:
        async with self.database.session() as db:
            query = select(FloorGrant).where(FloorGrant.session_id == session_id).order_by(FloorGrant.started_at)
            return list(await db.scalars(query))
