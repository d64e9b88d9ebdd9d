"""What a live session keeps in the database: its status changes and every floor grant."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from server.collation import sorted_by_name
from server.live import events as ev
from server.live.bus import EventBus, Subscription, dispatcher
from server.live.lifecycle import SessionAction
from server.live.store import SessionInfo
from server.storage import sessions as session_store
from server.storage.db import Database
from server.storage.models import BridgePoint, FloorGrant


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
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self.handle = dispatcher({ev.FloorGranted: self._granted, ev.FloorEnded: self._ended})

    def subscribe(self, bus: EventBus) -> Subscription:
        return bus.subscribe(self.handle, name="floor-grant-store")

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
