"""The check-in store on SQLite and PostgreSQL: one open check-in per member, even under a race."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select

from server.attendance.checkin import Hall
from server.live.lifecycle import SessionStatus
from server.storage import checkins as store
from server.storage.db import Database
from server.storage.models import BridgePoint, Checkin, CheckinSource, Session, SessionInvite, Unit, UnitLevel
from server.views.auth import principal_of
from tests.conftest import Seed, seed_database


async def _session(database: Database, seed: Seed, point_ids: list[int]) -> int:
    async with database.session() as db:
        session = Session(title="t", status=SessionStatus.LIVE, scheduled_start=datetime(2026, 12, 1, 1, tzinfo=UTC),
                          scheduled_end=datetime(2026, 12, 1, 4, tzinfo=UTC),
                          actual_start=datetime(2026, 12, 1, 1, tzinfo=UTC))
        session.invites = [SessionInvite(bridge_point_id=pid) for pid in point_ids]
        db.add(session)
        await db.flush()
        return session.id


async def test_a_race_of_two_checkins_leaves_one_open(database: Database, password_hash: str) -> None:
    seed = await seed_database(database, password_hash)
    session_id = await _session(database, seed, [seed.point_a.id])
    member = principal_of(seed.member)

    async def attempt() -> store.CheckinOutcome:
        async with database.session() as db:
            return await store.check_in(db, member, Hall(session_id, seed.point_a.id), CheckinSource.CODE)

    outcomes = await asyncio.gather(*(attempt() for _ in range(4)), return_exceptions=True)
    done = [o for o in outcomes if isinstance(o, store.CheckinOutcome)]
    # Each attempt either opened the check-in or found it open; a loser of the race may be told to retry.
    assert sum(o.created for o in done) == 1
    assert all(not isinstance(o, Exception) or getattr(o, "code", "") == "checkin_conflict" for o in outcomes)
    async with database.session() as db:
        assert await db.scalar(select(func.count()).select_from(Checkin)) == 1


async def test_another_hall_closes_the_first_and_the_index_holds(database: Database, password_hash: str) -> None:
    seed = await seed_database(database, password_hash)
    session_id = await _session(database, seed, [seed.point_a.id, seed.point_b.id])
    member = principal_of(seed.member)
    async with database.session() as db:
        first = await store.check_in(db, member, Hall(session_id, seed.point_a.id), CheckinSource.CODE)
    async with database.session() as db:
        second = await store.check_in(db, member, Hall(session_id, seed.point_b.id), CheckinSource.QR)
    assert second.created and second.closed is not None and second.closed.id == first.checkin.id
    async with database.session() as db:
        rows = (await db.scalars(select(Checkin).order_by(Checkin.id))).all()
        assert [(c.bridge_point_id, c.checked_out_at is None) for c in rows] == [
            (seed.point_a.id, False), (seed.point_b.id, True)]
        assert await store.present_counts(db, session_id) == {seed.point_b.id: 1}


async def test_typed_codes_look_only_at_the_members_own_halls(database: Database, password_hash: str) -> None:
    seed = await seed_database(database, password_hash)
    async with database.session() as db:
        commune = Unit(name="Xã A1", slug="xa-a1", level=UnitLevel.COMMUNE, parent_id=seed.province_a.id)
        db.add(commune)
        await db.flush()
        hall = BridgePoint(name="Điểm cầu xã A1", slug="xa-a1", unit_id=commune.id)
        db.add(hall)
        await db.flush()
        seed.member.unit_id = commune.id
        db.add(seed.member)
    session_id = await _session(database, seed, [seed.point_a.id, seed.point_b.id, hall.id])
    async with database.session() as db:
        seed.member.unit_id = commune.id
        halls, home = await store.typed_code_halls(db, principal_of(seed.member))
    assert sorted(h.point_id for h in halls) == sorted([seed.point_a.id, hall.id])
    assert home == [Hall(session_id, hall.id)]
