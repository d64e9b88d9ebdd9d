"""What a live session keeps in the database: its status changes and every floor grant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from server.collation import sorted_by_name
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
                           invited={point.id: point.name for point in points}, actual_start=session.actual_start)


class DatabaseLiveStore:
    """The live room's store on the application database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def transition(self, session_id: int, action: SessionAction) -> SessionInfo:
        async with self.database.session() as db:
            await session_store.apply_action(db, session_id, action)
        return await load_info(self.database, session_id)

    async def floor_started(self, session_id: int, point_id: int, at: datetime, limit_seconds: int | None) -> int:
        async with self.database.session() as db:
            grant = FloorGrant(session_id=session_id, bridge_point_id=point_id, started_at=at,
                               limit_seconds=limit_seconds)
            db.add(grant)
            await db.flush()
            return grant.id

    async def floor_ended(self, grant_id: int, at: datetime, reason: str) -> None:
        async with self.database.session() as db:
            grant = await db.get(FloorGrant, grant_id)
            if grant is not None and grant.ended_at is None:
                grant.ended_at = max(at, grant.started_at)
                grant.end_reason = reason

    async def grants(self, session_id: int) -> list[FloorGrant]:
        async with self.database.session() as db:
            query = select(FloorGrant).where(FloorGrant.session_id == session_id).order_by(FloorGrant.started_at)
            return list(await db.scalars(query))
