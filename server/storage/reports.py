"""Attendance over many sessions: a member's history, and a unit's figures rolled up its hierarchy.

Both read the materialised ``attendance_records`` of ended sessions (one row
per member and session) with grouped Core selects, never the presence log:
a year of weekly sessions for 10,000 members is 520,000 rows, summed in the
database. An ended session whose records are missing (a crash at its end) is
computed first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import case, func, select

from server.attendance.rule import CreditRule
from server.collation import vietnamese_key
from server.errors import NotFound
from server.live.lifecycle import SessionStatus
from server.storage.attendance import missing_records, refresh_records
from server.storage.db import Database
from server.storage.models import AttendanceRecord, BridgePoint, Session, Unit, User
from server.storage.units import subtree, unit_tree


async def ensure_records(database: Database, session_ids: Iterable[int], rule: CreditRule) -> list[int]:
    """Write the records of the ended sessions among ``session_ids`` that lack them; their ids."""
    async with database.session() as db:
        missing = await missing_records(db, session_ids)
    for session_id in missing:
        await refresh_records(database, session_id, rule)
    return missing


# --- per member --------------------------------------------------------------------------------


@dataclass
class HistoryRow:
    session_id: int
    title: str
    scheduled_start: datetime
    bridge_point: str
    live_seconds: int
    replay_seconds: int
    credited_seconds: int
    status: str
    late_minutes: int
    early_minutes: int
    checked_in: bool
    corrected: bool

    def api(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "title": self.title,
                "scheduled_start": self.scheduled_start.isoformat(), "bridge_point": self.bridge_point,
                "live_seconds": self.live_seconds, "replay_seconds": self.replay_seconds,
                "credited_seconds": self.credited_seconds, "status": self.status,
                "late_minutes": self.late_minutes, "early_minutes": self.early_minutes,
                "checked_in": self.checked_in, "corrected": self.corrected}


@dataclass
class MemberHistory:
    user_id: int
    username: str
    full_name: str
    unit: str
    rows: list[HistoryRow]

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r.status == status)

    @property
    def credited_seconds(self) -> int:
        return sum(r.credited_seconds for r in self.rows)

    def api(self, rule: CreditRule) -> dict[str, Any]:
        return {"user": {"id": self.user_id, "username": self.username, "full_name": self.full_name,
                         "unit": self.unit},
                "rule": rule.as_dict(),
                "totals": {"sessions": len(self.rows), "attended": self.count("attended"),
                           "partial": self.count("partial"), "absent": self.count("absent"),
                           "credited_seconds": self.credited_seconds},
                "sessions": [r.api() for r in self.rows]}


async def member_history(database: Database, user_id: int, rule: CreditRule) -> MemberHistory:
    """Every ended session the member has a result in, newest first."""
    async with database.session() as db:
        user = await db.get(User, user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        ended = list(await db.scalars(select(Session.id).where(Session.status == SessionStatus.ENDED)))
    await ensure_records(database, ended, rule)
    async with database.session() as db:
        unit = await db.get(Unit, user.unit_id) if user.unit_id else None
        record = AttendanceRecord
        rows = (await db.execute(
            select(record.session_id, Session.title, Session.scheduled_start, BridgePoint.name.label("point"),
                   record.live_seconds, record.replay_seconds, record.credited_seconds, record.status,
                   record.late_minutes, record.early_minutes, record.checked_in, record.corrected)
            .join(Session, Session.id == record.session_id)
            .outerjoin(BridgePoint, BridgePoint.id == record.bridge_point_id)
            .where(record.user_id == user_id)
            .order_by(Session.scheduled_start.desc(), Session.id.desc()))).all()
    history = [HistoryRow(r.session_id, r.title, r.scheduled_start, r.point or "", r.live_seconds,
                          r.replay_seconds, r.credited_seconds, r.status, r.late_minutes, r.early_minutes,
                          r.checked_in, r.corrected) for r in rows]
    return MemberHistory(user.id, user.username, user.full_name, unit.name if unit else "", history)


# --- per unit ----------------------------------------------------------------------------------


@dataclass
class UnitRow:
    """A unit's figures over the period, its units below included."""

    unit_id: int
    name: str
    level: str
    own: bool = False  # the members of the unit itself, not of the units below
    session_ids: set[int] = field(default_factory=set)
    member_sessions: int = 0
    attended: int = 0
    partial: int = 0
    absent: int = 0
    credited_seconds: int = 0

    @property
    def sessions(self) -> int:
        return len(self.session_ids)

    @property
    def attended_percent(self) -> float:
        return round(100.0 * self.attended / self.member_sessions, 1) if self.member_sessions else 0.0

    @property
    def credited_hours(self) -> float:
        return round(self.credited_seconds / 3600, 1)

    def add(self, session_id: int, count: int, attended: int, partial: int, credited: int) -> None:
        self.session_ids.add(session_id)
        self.member_sessions += count
        self.attended += attended
        self.partial += partial
        self.absent += count - attended - partial
        self.credited_seconds += credited

    def api(self) -> dict[str, Any]:
        return {"unit_id": self.unit_id, "name": self.name, "level": self.level, "own": self.own,
                "sessions": self.sessions, "member_sessions": self.member_sessions, "attended": self.attended,
                "partial": self.partial, "absent": self.absent, "attended_percent": self.attended_percent,
                "credited_seconds": self.credited_seconds, "credited_hours": self.credited_hours}


@dataclass
class UnitReport:
    unit: UnitRow  # the whole unit: the total
    parent_id: int | None
    start: date
    end: date
    rows: list[UnitRow]  # the units just below (each with its own subtree), then the unit's own members

    def api(self, rule: CreditRule) -> dict[str, Any]:
        return {"unit": {"id": self.unit.unit_id, "name": self.unit.name, "level": self.unit.level,
                         "parent_id": self.parent_id},
                "from": self.start.isoformat(), "to": self.end.isoformat(), "rule": rule.as_dict(),
                "total": self.unit.api(), "rows": [r.api() for r in self.rows]}


async def unit_report(database: Database, unit_id: int, start: date, end: date, zone: tzinfo,
                      rule: CreditRule) -> UnitReport:
    """A unit's attendance in the ended sessions scheduled from ``start`` to ``end`` (dates in ``zone``).

    One row per unit just below (commune -> province -> central: each row
    rolls up its own subtree) and one for the members of the unit itself.
    """
    since = datetime.combine(start, time.min, zone)
    until = datetime.combine(end + timedelta(days=1), time.min, zone)
    async with database.session() as db:
        unit = await db.get(Unit, unit_id)
        if unit is None:
            raise NotFound(f"unit {unit_id} not found")
        ended = list(await db.scalars(select(Session.id).where(
            Session.status == SessionStatus.ENDED, Session.scheduled_start >= since,
            Session.scheduled_start < until)))
    await ensure_records(database, ended, rule)

    async with database.session() as db:
        children = await unit_tree(db)
        names = {r.id: (r.name, r.level.value) for r in (await db.execute(select(Unit.id, Unit.name, Unit.level)))}
        total = UnitRow(unit.id, unit.name, unit.level.value)
        own = UnitRow(unit.id, unit.name, unit.level.value, own=True)
        below = {child: UnitRow(child, *names[child]) for child in children.get(unit.id, [])}
        # Which row each unit of the subtree adds to.
        row_of: dict[int, UnitRow] = {unit.id: own}
        for child, row in below.items():
            for descendant in subtree(children, child):
                row_of[descendant] = row
        record = AttendanceRecord
        query = (
            select(record.unit_id, record.session_id, func.count().label("n"),
                   func.sum(case((record.status == "attended", 1), else_=0)).label("attended"),
                   func.sum(case((record.status == "partial", 1), else_=0)).label("partial"),
                   func.sum(record.credited_seconds).label("credited"))
            .join(Session, Session.id == record.session_id)
            .where(Session.status == SessionStatus.ENDED, Session.scheduled_start >= since,
                   Session.scheduled_start < until)
            .group_by(record.session_id, record.unit_id)
        )
        if unit.parent_id is not None:
            # Below the top, only the subtree's records (a province's are a small share of the whole).
            query = query.where(record.unit_id.in_(list(row_of)))
        grouped = (await db.execute(query)).all()
    for g in grouped:
        row = row_of.get(g.unit_id)
        if row is None:
            continue
        figures = (g.session_id, int(g.n), int(g.attended or 0), int(g.partial or 0), int(g.credited or 0))
        row.add(*figures)
        total.add(*figures)
    rows = sorted(below.values(), key=lambda r: vietnamese_key(r.name))
    if own.member_sessions or not rows:
        rows.append(own)
    return UnitReport(total, unit.parent_id, start, end, rows)
