"""Attendance reports: who was expected, who was there, for how long, and what it counts for.

The source of truth is what was recorded: ``presence_events`` (every
endpoint's join, leave, drop, stop), ``checkins`` (members in a hall),
``floor_grants`` (talk time) and ``attendance_corrections``. A report is
computed from them with the pure rules of ``server.attendance``:

* a participant's connected time is the union of its endpoints' intervals
  (several tabs, a WHEP player, reconnects: one person, never double time);
* a member's credited live time is the union of their own connected time
  (online) and of each check-in interval intersected with that hall's
  connected time, all within the session's live interval — a member in a
  hall and online at once is credited once;
* replay of the recording (``server.storage.replay``) is mapped back onto
  the session's clock: shown on its own, and counted with the live time as
  their union (the first half live and the second in replay is the whole);
* the credit rule turns it into attended / partial / absent, for every
  expected member (absent ones are rows too).

``attendance_records`` keeps each session's result per member once it has
ended (written by :class:`RecordKeeper` and again after any correction), so
reports over many sessions read one row per member and session.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.attendance import intervals as iv
from server.attendance.rule import CreditRule, Status, credit
from server.auth.roles import Role
from server.collation import vietnamese_key as sort_key
from server.live import events as ev
from server.live.bus import EventBus, Subscription, dispatcher
from server.live.lifecycle import SessionStatus
from server.storage import replay as replay_store
from server.storage.db import Database
from server.errors import Conflict, NotFound, ValidationFailed
from server.storage.models import (
    AttendanceAudit,
    AttendanceCorrection,
    AttendanceRecord,
    BridgePoint,
    Checkin,
    FloorGrant,
    PresenceEvent,
    Session,
    SessionInvite,
    Unit,
    User,
    utcnow,
)

log = logging.getLogger(__name__)

# Replay reports reach the records of an ended session at most this late.
REPLAY_REFRESH_SECONDS = 30.0


def _ts(value: datetime) -> float:
    return value.timestamp()


@dataclass
class MemberRow:
    user_id: int
    username: str
    full_name: str
    unit_id: int | None
    unit: str
    bridge_point_id: int | None
    bridge_point: str
    live_seconds: int
    replay_seconds: int
    credited_seconds: int
    status: str
    late_minutes: int
    early_minutes: int
    online_seconds: int = 0  # connected on their own (member page, WHEP)
    hall_seconds: int = 0  # checked in at a connected hall
    checked_in: bool = False
    checkin_sources: list[str] = field(default_factory=list)
    expected: bool = True
    # The newest administrator's correction, when there is one: shown on every report.
    correction: dict[str, Any] | None = None

    def api(self) -> dict[str, Any]:
        return {"username": self.username, "full_name": self.full_name, "unit": self.unit,
                "bridge_point": self.bridge_point, "live_seconds": self.live_seconds,
                "replay_seconds": self.replay_seconds, "credited_seconds": self.credited_seconds,
                "status": self.status, "late_minutes": self.late_minutes, "early_minutes": self.early_minutes,
                "online_seconds": self.online_seconds, "hall_seconds": self.hall_seconds,
                "checked_in": self.checked_in, "expected": self.expected, "correction": self.correction}


@dataclass
class PointRow:
    bridge_point_id: int
    name: str
    unit: str
    expected: int = 0
    checked_in: int = 0
    attended: int = 0
    partial: int = 0
    absent: int = 0
    connected_seconds: int = 0
    talk_seconds: int = 0

    @property
    def attended_percent(self) -> float:
        return round(100.0 * self.attended / self.expected, 1) if self.expected else 0.0

    def api(self) -> dict[str, Any]:
        return {"bridge_point_id": self.bridge_point_id, "name": self.name, "unit": self.unit,
                "expected": self.expected, "checked_in": self.checked_in, "attended": self.attended,
                "partial": self.partial, "absent": self.absent, "attended_percent": self.attended_percent,
                "connected_seconds": self.connected_seconds, "talk_seconds": self.talk_seconds}


@dataclass
class SessionReport:
    session_id: int
    title: str
    status: str
    live_start: datetime | None
    live_end: datetime | None
    rule: CreditRule
    members: list[MemberRow]
    points: list[PointRow]
    generated_at: datetime

    @property
    def live_seconds(self) -> int:
        if self.live_start is None or self.live_end is None:
            return 0
        return max(0, int((self.live_end - self.live_start).total_seconds()))

    def api(self, members: Iterable[MemberRow] | None = None,
            points: Iterable[PointRow] | None = None) -> dict[str, Any]:
        return {
            "session": {"id": self.session_id, "title": self.title, "status": self.status,
                        "live_start": self.live_start.isoformat() if self.live_start else None,
                        "live_end": self.live_end.isoformat() if self.live_end else None,
                        "live_seconds": self.live_seconds},
            "rule": self.rule.as_dict(),
            "generated_at": self.generated_at.isoformat(),
            "points": [p.api() for p in (self.points if points is None else points)],
            "members": [m.api() for m in (self.members if members is None else members)],
        }


# --- gathering ---------------------------------------------------------------------------------


async def _unit_tree(db: AsyncSession) -> tuple[dict[int, int | None], dict[int, str]]:
    rows = (await db.execute(select(Unit.id, Unit.parent_id, Unit.name))).all()
    return {r.id: r.parent_id for r in rows}, {r.id: r.name for r in rows}


def _home_points(parents: dict[int, int | None], points_by_unit: dict[int, list[int]]) -> dict[int, int]:
    """unit id -> the invited point of the nearest unit at or above it."""
    home: dict[int, int] = {}
    for unit in parents:
        current: int | None = unit
        seen: set[int] = set()
        while current is not None and current not in seen:
            if current in points_by_unit:
                home[unit] = points_by_unit[current][0]
                break
            seen.add(current)
            current = parents.get(current)
    return home


def _participant_intervals(rows: Iterable[Any], open_until: float | None) -> dict[str, list[iv.Interval]]:
    """participant key -> the union of its endpoints' connected intervals."""
    by_key: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
    for row in rows:
        by_key[row.participant_key].append((row.endpoint_id, "join" if row.kind == "join" else "end", _ts(row.at)))
    return {key: iv.pair(events, open_until=open_until) for key, events in by_key.items()}


async def session_report(db: AsyncSession, session_id: int, rule: CreditRule,
                         now: datetime | None = None) -> SessionReport:
    """Every expected member of the session (and anyone else credited), with their result."""
    now = now or utcnow()
    session = await db.get(Session, session_id)
    if session is None:
        raise NotFound(f"session {session_id} not found")
    live: iv.Interval | None = None
    live_end = session.actual_end
    if session.actual_start is not None:
        if live_end is None and session.status is SessionStatus.LIVE:
            live_end = now
        if live_end is not None:
            live = (_ts(session.actual_start), _ts(live_end))
    # A join never closed counts until now while live, and until the end once ended: the end
    # closes every endpoint, even when its leave did not reach the database before the records.
    open_until = _ts(live_end) if live_end is not None else None

    parents, unit_names = await _unit_tree(db)
    point_rows = (await db.execute(
        select(BridgePoint.id, BridgePoint.name, BridgePoint.unit_id)
        .join(SessionInvite, SessionInvite.bridge_point_id == BridgePoint.id)
        .where(SessionInvite.session_id == session_id))).all()
    points = {r.id: PointRow(r.id, r.name, unit_names.get(r.unit_id, "")) for r in point_rows}
    points_by_unit: dict[int, list[int]] = defaultdict(list)
    for r in sorted(point_rows, key=lambda r: sort_key(r.name)):
        points_by_unit[r.unit_id].append(r.id)
    home = _home_points(parents, points_by_unit)
    point_names = {r.id: r.name for r in point_rows}

    presence = (await db.execute(
        select(PresenceEvent.participant_key, PresenceEvent.endpoint_id, PresenceEvent.kind, PresenceEvent.at)
        .where(PresenceEvent.session_id == session_id))).all()
    connected = _participant_intervals(presence, open_until)

    checkins = (await db.execute(
        select(Checkin.user_id, Checkin.bridge_point_id, Checkin.checked_in_at, Checkin.checked_out_at,
               Checkin.source)
        .where(Checkin.session_id == session_id, Checkin.removed_at.is_(None)))).all()
    stay_end = _ts(live_end) if live_end is not None else _ts(now)
    in_hall: dict[int, list[iv.Interval]] = defaultdict(list)
    sources: dict[int, set[str]] = defaultdict(set)
    checked_points: dict[int, set[int]] = defaultdict(set)
    last_point: dict[int, tuple[datetime, int]] = {}
    for c in checkins:
        start = _ts(c.checked_in_at)
        end = _ts(c.checked_out_at) if c.checked_out_at is not None else max(start, stay_end)
        hall = connected.get(ev.hall_key(c.bridge_point_id), [])
        in_hall[c.user_id].extend(iv.intersect([(start, end)], hall))
        sources[c.user_id].add(c.source.value if hasattr(c.source, "value") else str(c.source))
        checked_points[c.bridge_point_id].add(c.user_id)
        if c.user_id not in last_point or c.checked_in_at >= last_point[c.user_id][0]:
            last_point[c.user_id] = (c.checked_in_at, c.bridge_point_id)

    # Expected: the active members of the invited points' units and of the units below them.
    expected_units = [unit for unit in parents if unit in home]
    members_q = select(User.id, User.username, User.full_name, User.unit_id).where(
        User.role == Role.MEMBER, User.active.is_(True), User.unit_id.in_(expected_units))
    users = {r.id: (r, True) for r in (await db.execute(members_q)).all()} if expected_units else {}
    # And anyone else credited as a member (joined online as a member, checked in, or corrected).
    corrections = await _newest_corrections(db, session_id)
    # Replay of the recording: mapped onto the session's clock, counted with the live time (their union).
    replays = await replay_store.session_replays(db, session_id)
    others = {int(key.split(":")[1]) for key in connected if key.startswith("user:")} | set(in_hall)
    others |= set(corrections) | set(replays)
    others -= set(users)
    if others:
        extra = (await db.execute(select(User.id, User.username, User.full_name, User.unit_id, User.role)
                                  .where(User.id.in_(others)))).all()
        for r in extra:
            if r.role is Role.MEMBER or r.id in in_hall or r.id in corrections:
                users[r.id] = (r, False)

    grants = (await db.execute(select(FloorGrant.bridge_point_id, FloorGrant.started_at, FloorGrant.ended_at)
                               .where(FloorGrant.session_id == session_id))).all()

    members: list[MemberRow] = []
    for user_id, (user, expected) in users.items():
        online = connected.get(ev.user_key(user_id), [])
        hall = in_hall.get(user_id, [])
        result = credit(rule, live, iv.union([*online, *hall]), replays.get(user_id, ()))
        point_id = last_point[user_id][1] if user_id in last_point else home.get(user.unit_id) if user.unit_id else None
        row = MemberRow(
            user_id=user_id, username=user.username, full_name=user.full_name, unit_id=user.unit_id,
            unit=unit_names.get(user.unit_id, "") if user.unit_id else "", bridge_point_id=point_id,
            bridge_point=point_names.get(point_id, "") if point_id else "", live_seconds=result.live_seconds,
            replay_seconds=result.replay_seconds, credited_seconds=result.credited_seconds,
            status=result.status.value, late_minutes=result.late_minutes, early_minutes=result.early_minutes,
            online_seconds=int(iv.length(iv.clip(online, *live))) if live and online else 0,
            hall_seconds=int(iv.length(iv.clip(hall, *live))) if live and hall else 0,
            checked_in=user_id in sources, checkin_sources=sorted(sources.get(user_id, ())), expected=expected)
        correction = corrections.get(user_id)
        if correction is not None:
            apply_correction(row, correction, rule, live)
        members.append(row)
    # A few points and units, thousands of names: each distinct text is weighed once.
    keys: dict[str, Any] = {}

    def key(text: str) -> Any:
        found = keys.get(text)
        if found is None:
            found = keys[text] = sort_key(text)
        return found

    members.sort(key=lambda m: (key(m.bridge_point), key(m.unit), sort_key(m.full_name), m.username))

    for m in members:
        home_point = home.get(m.unit_id) if m.unit_id else None
        if m.expected and home_point in points:
            point = points[home_point]
            point.expected += 1
            setattr(point, m.status, getattr(point, m.status) + 1)
    for point_id, point in points.items():
        point.checked_in = len(checked_points.get(point_id, ()))
        hall = connected.get(ev.hall_key(point_id), [])
        point.connected_seconds = int(iv.length(iv.clip(hall, *live))) if live else 0
        talk = [(_ts(g.started_at), _ts(g.ended_at) if g.ended_at else stay_end)
                for g in grants if g.bridge_point_id == point_id]
        point.talk_seconds = int(iv.length(iv.clip(talk, *live) if live else talk))
    ordered_points = sorted(points.values(), key=lambda p: sort_key(p.name))
    return SessionReport(session_id=session.id, title=session.title, status=session.status.value,
                         live_start=session.actual_start, live_end=live_end, rule=rule, members=members,
                         points=ordered_points, generated_at=now)


def apply_correction(row: MemberRow, correction: dict[str, Any], rule: CreditRule,
                     live: iv.Interval | None) -> None:
    """An administrator's correction over the computed result.

    Credited seconds without a status take the status the rule gives them (a
    member credited the whole session is not left "absent").
    """
    row.correction = correction
    if correction["credited_seconds"] is not None:
        row.credited_seconds = correction["credited_seconds"]
    if correction["status"]:
        row.status = correction["status"]
    elif correction["credited_seconds"] is not None:
        duration = live[1] - live[0] if live is not None else 0
        row.status = rule.status(row.credited_seconds, duration).value


async def _newest_corrections(db: AsyncSession, session_id: int) -> dict[int, dict[str, Any]]:
    rows = (await db.execute(
        select(AttendanceCorrection, User.username)
        .join(User, User.id == AttendanceCorrection.corrected_by_id)
        .where(AttendanceCorrection.session_id == session_id)
        .order_by(AttendanceCorrection.corrected_at, AttendanceCorrection.id))).all()
    newest: dict[int, dict[str, Any]] = {}
    for correction, by in rows:
        newest[correction.user_id] = {"status": correction.status, "credited_seconds": correction.credited_seconds,
                                      "reason": correction.reason, "by": by,
                                      "at": correction.corrected_at.isoformat()}
    return newest


# --- corrections ---------------------------------------------------------------------------------


async def correct(db: AsyncSession, session_id: int, user_id: int, *, status: str | None,
                  credited_seconds: int | None, reason: str, actor_id: int, rule: CreditRule,
                  now: datetime | None = None) -> MemberRow:
    """An administrator's correction of one member's result: kept, audited, and in the records at once.

    The session must have gone live; credited seconds are at most its live
    duration. Returns the member's row as the report now shows it.
    """
    now = now or utcnow()
    before_report = await session_report(db, session_id, rule, now)
    if before_report.live_start is None:
        raise Conflict("the session has not gone live: there is nothing to correct", code="not_live_yet")
    if credited_seconds is not None and credited_seconds > before_report.live_seconds:
        raise ValidationFailed.one("credited_seconds", "too_large",
                                   f"at most the live duration, {before_report.live_seconds} s")
    user = await db.get(User, user_id)
    if user is None:
        raise ValidationFailed.one("username", "unknown_user", "no such user")
    if user.role is not Role.MEMBER and not any(m.user_id == user_id for m in before_report.members):
        raise ValidationFailed.one("username", "not_a_member", "only members have an attendance result")
    before = next((m for m in before_report.members if m.user_id == user_id), None)
    db.add(AttendanceCorrection(session_id=session_id, user_id=user_id, status=status,
                                credited_seconds=credited_seconds, reason=reason, corrected_by_id=actor_id,
                                corrected_at=now))
    await db.flush()
    report = await session_report(db, session_id, rule, now)
    after = next(m for m in report.members if m.user_id == user_id)
    db.add(AttendanceAudit(at=now, actor_id=actor_id, session_id=session_id, member_id=user_id,
                           action="correction", before=audit_json(_result(before)), after=audit_json(_result(after)),
                           reason=reason))
    if report.status == SessionStatus.ENDED.value:
        await write_records(db, report)
    return after


def _result(row: MemberRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"status": row.status, "credited_seconds": row.credited_seconds, "live_seconds": row.live_seconds}


# --- the records of ended sessions -------------------------------------------------------------


async def write_records(db: AsyncSession, report: SessionReport) -> int:
    """Keep ``report``'s result per member (replacing what was computed before)."""
    await db.execute(delete(AttendanceRecord).where(AttendanceRecord.session_id == report.session_id))
    rows = [{"session_id": report.session_id, "user_id": m.user_id, "unit_id": m.unit_id,
             "bridge_point_id": m.bridge_point_id, "live_seconds": m.live_seconds,
             "replay_seconds": m.replay_seconds, "credited_seconds": m.credited_seconds, "status": m.status,
             "late_minutes": m.late_minutes, "early_minutes": m.early_minutes, "checked_in": m.checked_in,
             "corrected": m.correction is not None, "computed_at": report.generated_at}
            for m in report.members]
    for start in range(0, len(rows), 2000):
        await db.execute(AttendanceRecord.__table__.insert(), rows[start:start + 2000])
    return len(rows)


async def refresh_records(database: Database, session_id: int, rule: CreditRule) -> int:
    """Recompute and keep an ended session's records (after its end, a check-in change, a correction)."""
    async with database.session() as db:
        session = await db.get(Session, session_id)
        if session is None or session.status is not SessionStatus.ENDED:
            return 0
        report = await session_report(db, session_id, rule)
        return await write_records(db, report)


async def missing_records(db: AsyncSession, session_ids: Iterable[int]) -> list[int]:
    """Ended sessions among ``session_ids`` whose records were never written (a crash at the end)."""
    ids = list(session_ids)
    if not ids:
        return []
    have = set(await db.scalars(select(AttendanceRecord.session_id).where(
        AttendanceRecord.session_id.in_(ids)).distinct()))
    return [i for i in ids if i not in have]


class RecordKeeper:
    """A subscriber of every session: when one ends, its results are computed and kept.

    The computation runs in a task of its own (a session of 10,000 members
    takes a fraction of a second): the room that published the end is not held.
    """

    def __init__(self, database: Database, rule: CreditRule) -> None:
        self.database = database
        self.rule = rule
        self._tasks: set[asyncio.Task[int]] = set()
        self._later: dict[int, asyncio.Task[None]] = {}
        self.handle = dispatcher({ev.SessionEnded: self._ended})

    def subscribe(self, bus: EventBus) -> Subscription:
        return bus.subscribe(self.handle, name="attendance-records")

    async def _ended(self, event: ev.SessionEnded) -> None:
        assert event.session_id is not None
        task = asyncio.create_task(self._refresh(event.session_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, session_id: int) -> int:
        # The leaves of the room's closing follow the end: let them reach the database first.
        await asyncio.sleep(1.0)
        try:
            return await refresh_records(self.database, session_id, self.rule)
        except Exception:
            log.exception("attendance: the records of session %s could not be written", session_id)
            return 0

    def soon(self, session_id: int, delay: float = REPLAY_REFRESH_SECONDS) -> None:
        """A member's replay credit grew: the ended session's records follow within ``delay``.

        Reports come every few seconds from every member watching: they are
        coalesced, one computation per session and delay.
        """
        if session_id in self._later:
            return

        async def later() -> None:
            await asyncio.sleep(delay)
            del self._later[session_id]
            await self.refresh({session_id})
        self._later[session_id] = asyncio.create_task(later())

    async def refresh(self, session_ids: set[int]) -> None:
        """Rows reached the database late (a replayed spool, a recovery): ended sessions among
        ``session_ids`` are computed again; others will be at their end."""
        for session_id in sorted(session_ids):
            try:
                await refresh_records(self.database, session_id, self.rule)
            except Exception:
                log.exception("attendance: the records of session %s could not be refreshed", session_id)

    async def drain(self) -> None:
        """Finish what is under way; refresh now what was to be refreshed later."""
        waiting = list(self._later)
        for task in self._later.values():
            task.cancel()
        self._later.clear()
        await self.refresh(set(waiting))
        await asyncio.gather(*self._tasks, return_exceptions=True)


def rule_from_settings(settings: Any) -> CreditRule:
    return CreditRule(attended_percent=settings.attended_percent, late_after_minutes=settings.late_after_minutes,
                      early_before_minutes=settings.early_before_minutes)


def audit_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


async def home_points(db: AsyncSession, session_id: int) -> dict[int, int]:
    """unit id -> the invited point of the session its members are expected at (check-ins, manual marking)."""
    parents, _ = await _unit_tree(db)
    rows = (await db.execute(
        select(BridgePoint.id, BridgePoint.name, BridgePoint.unit_id)
        .join(SessionInvite, SessionInvite.bridge_point_id == BridgePoint.id)
        .where(SessionInvite.session_id == session_id))).all()
    points_by_unit: dict[int, list[int]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: sort_key(r.name)):
        points_by_unit[r.unit_id].append(r.id)
    return _home_points(parents, points_by_unit)
