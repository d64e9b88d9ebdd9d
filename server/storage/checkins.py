"""Check-ins: members present in a hall, the operator's corrections, and their audit trail.

A member has at most one open check-in per session (a partial unique index,
``uq_checkins_open``): checking in again at the same hall returns the open
one, checking in at another hall closes it first. A wrong check-in is
marked removed, never deleted; every removal and manual marking writes an
``attendance_audit`` row with the check-in before and after.

Who may do what is decided here, so the pages and the API cannot differ:
only members check in, and only at an invited hall of a session they are
expected at (the same rule as seeing the session); an operator lists,
removes and marks only at their own bridge point; an administrator at any.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.attendance.checkin import Hall
from server.auth.principal import Principal
from server.auth.roles import Role
from server.errors import Conflict, Forbidden, NotFound, ValidationFailed
from server.live.lifecycle import SessionStatus
from server.storage.attendance import audit_json, home_points
from server.storage.models import (
    AttendanceAudit,
    BridgePoint,
    Checkin,
    CheckinSource,
    Session,
    SessionInvite,
    User,
    utcnow,
)
from server.storage.sessions import visible_session
from server.storage.units import ancestor_ids

# A member checks in only while the session is about to start or live.
OPEN = (SessionStatus.SCHEDULED, SessionStatus.LIVE)


@dataclass(frozen=True)
class CheckinOutcome:
    checkin: Checkin
    created: bool  # False: the member was already checked in at this hall
    closed: Checkin | None = None  # the check-in at another hall this one ended


@dataclass(frozen=True)
class Entry:
    """One check-in as the operator's list shows it."""

    id: int
    user_id: int
    username: str
    full_name: str
    bridge_point_id: int
    bridge_point: str
    checked_in_at: datetime
    checked_out_at: datetime | None
    source: str
    recorded_by: str | None


def checkin_state(checkin: Checkin | None) -> dict[str, Any] | None:
    """A check-in as the audit trail keeps it (before and after)."""
    if checkin is None:
        return None
    return {"id": checkin.id, "bridge_point_id": checkin.bridge_point_id, "source": checkin.source.value,
            "checked_in_at": checkin.checked_in_at, "checked_out_at": checkin.checked_out_at,
            "recorded_by_id": checkin.recorded_by_id, "removed_at": checkin.removed_at,
            "removed_by_id": checkin.removed_by_id}


# Where a member may check in ---------------------------------------------------------------------

async def typed_code_halls(db: AsyncSession, principal: Principal) -> tuple[list[Hall], list[Hall]]:
    """(halls whose typed code may check this member in, their home halls).

    Only the invited halls of the member's own units (their unit and the
    units above it) of open sessions: a national session invites thousands
    of halls, and matching a typed code against all of them would make a
    random guess succeed often. A member visiting another hall scans its QR.
    """
    if principal.unit_id is None:
        return [], []
    chain = await ancestor_ids(db, principal.unit_id)
    rows = (await db.execute(
        select(SessionInvite.session_id, BridgePoint.id, BridgePoint.unit_id)
        .join(BridgePoint, BridgePoint.id == SessionInvite.bridge_point_id)
        .join(Session, Session.id == SessionInvite.session_id)
        .where(Session.status.in_(OPEN), BridgePoint.unit_id.in_(chain)))).all()
    halls = [Hall(r.session_id, r.id) for r in rows]
    nearest: dict[int, int] = {}
    for r in rows:
        rank = chain.index(r.unit_id)
        nearest[r.session_id] = min(rank, nearest.get(r.session_id, rank))
    home = [Hall(r.session_id, r.id) for r in rows if chain.index(r.unit_id) == nearest[r.session_id]]
    return halls, home


async def _open_checkin(db: AsyncSession, session_id: int, user_id: int) -> Checkin | None:
    return await db.scalar(select(Checkin).where(
        Checkin.session_id == session_id, Checkin.user_id == user_id,
        Checkin.checked_out_at.is_(None), Checkin.removed_at.is_(None)))


async def _invited_point(db: AsyncSession, session: Session, point_id: int) -> BridgePoint:
    point = await db.get(BridgePoint, point_id)
    if point is None or point_id not in session.invited_point_ids:
        raise Forbidden("this hall is not invited to the session", code="not_invited")
    return point


async def _place(db: AsyncSession, session_id: int, user_id: int, point_id: int, source: CheckinSource,
                 at: datetime, now: datetime, recorded_by: int | None) -> CheckinOutcome:
    """Open a check-in at ``point_id``: harmless if one is open there, closing one open elsewhere."""
    for _ in range(2):
        existing = await _open_checkin(db, session_id, user_id)
        if existing is not None and existing.bridge_point_id == point_id:
            return CheckinOutcome(existing, created=False)
        if existing is not None:
            existing.checked_out_at = max(now, existing.checked_in_at)
            await db.flush()  # closed before the new one opens (the unique index)
        checkin = Checkin(session_id=session_id, user_id=user_id, bridge_point_id=point_id, checked_in_at=at,
                          source=source, recorded_by_id=recorded_by)
        try:
            async with db.begin_nested():
                db.add(checkin)
                await db.flush()
        except IntegrityError:
            # Another request of the same member opened one meanwhile: read it and decide again.
            continue
        return CheckinOutcome(checkin, created=True, closed=existing)
    raise Conflict("the check-in changed meanwhile: try again", code="checkin_conflict")


async def check_in(db: AsyncSession, principal: Principal, hall: Hall, source: CheckinSource,
                   now: datetime | None = None) -> CheckinOutcome:
    """Check a member in at ``hall`` (they scanned its QR or typed its code)."""
    now = now or utcnow()
    if principal.role is not Role.MEMBER:
        raise Forbidden("only members check in; operators mark members present on the check-in list",
                        code="not_member")
    try:
        session = await visible_session(db, principal, hall.session_id)
    except NotFound:
        raise Forbidden("this code is for a session you are not expected at", code="other_units") from None
    if session.status not in OPEN:
        raise Conflict("check-in is closed: the session has ended or was cancelled", code="session_not_open")
    await _invited_point(db, session, hall.point_id)
    return await _place(db, session.id, principal.user_id, hall.point_id, source, now, now, principal.user_id)


async def check_out(db: AsyncSession, principal: Principal, checkin_id: int, now: datetime | None = None) -> Checkin:
    """The member leaves the hall before the end (optional: the session's end closes every check-in)."""
    checkin = await db.get(Checkin, checkin_id)
    if checkin is None or checkin.user_id != principal.user_id:
        raise NotFound("no such check-in of yours")
    if checkin.removed_at is not None or checkin.checked_out_at is not None:
        raise Conflict("this check-in is already closed", code="already_checked_out")
    checkin.checked_out_at = max(now or utcnow(), checkin.checked_in_at)
    await db.flush()
    return checkin


async def current_checkins(db: AsyncSession, user_id: int) -> list[tuple[Checkin, Session, BridgePoint]]:
    """The member's open check-ins in sessions still open (what the phone page shows)."""
    rows = (await db.execute(
        select(Checkin, Session, BridgePoint)
        .join(Session, Session.id == Checkin.session_id)
        .join(BridgePoint, BridgePoint.id == Checkin.bridge_point_id)
        .where(Checkin.user_id == user_id, Checkin.checked_out_at.is_(None), Checkin.removed_at.is_(None),
               Session.status.in_(OPEN))
        .order_by(Checkin.checked_in_at.desc()))).all()
    return [(row[0], row[1], row[2]) for row in rows]


# The operator's list -------------------------------------------------------------------------------

async def staff_session(db: AsyncSession, principal: Principal, session_id: int) -> Session:
    """The session, if the caller may see its check-ins: an operator of an invited point, its speaker, an admin."""
    if principal.role is Role.MEMBER:
        raise Forbidden("members see only their own check-in", code="forbidden")
    return await visible_session(db, principal, session_id)


def own_point(principal: Principal, session: Session, point_id: int | None = None) -> int | None:
    """The point an operator acts on (always their own); for an admin, ``point_id`` (None: all)."""
    if principal.role is Role.OPERATOR:
        if principal.bridge_point_id is None or principal.bridge_point_id not in session.invited_point_ids:
            raise Forbidden("your bridge point is not invited to this session", code="not_invited")
        if point_id is not None and point_id != principal.bridge_point_id:
            raise Forbidden("an operator acts only at their own bridge point", code="other_point")
        return principal.bridge_point_id
    if principal.role is Role.ADMIN:
        return point_id
    raise Forbidden("only the hall's operator or an administrator changes check-ins", code="forbidden")


async def list_entries(db: AsyncSession, session_id: int, point_id: int | None = None) -> list[Entry]:
    """The check-ins not removed, newest first (at one point, or all)."""
    recorder = aliased(User)
    query = (
        select(Checkin, User.username, User.full_name, BridgePoint.name, recorder.full_name.label("recorder"))
        .join(User, User.id == Checkin.user_id)
        .join(BridgePoint, BridgePoint.id == Checkin.bridge_point_id)
        .outerjoin(recorder, recorder.id == Checkin.recorded_by_id)
        .where(Checkin.session_id == session_id, Checkin.removed_at.is_(None))
        .order_by(Checkin.checked_in_at.desc(), Checkin.id.desc())
    )
    if point_id is not None:
        query = query.where(Checkin.bridge_point_id == point_id)
    entries = []
    for checkin, username, full_name, point_name, recorded in (await db.execute(query)).all():
        entries.append(Entry(checkin.id, checkin.user_id, username, full_name, checkin.bridge_point_id, point_name,
                             checkin.checked_in_at, checkin.checked_out_at, checkin.source.value,
                             recorded if checkin.recorded_by_id != checkin.user_id else None))
    return entries


async def present_counts(db: AsyncSession, session_id: int) -> dict[int, int]:
    """bridge point id -> members checked in there now (open check-ins)."""
    rows = await db.scalars(select(Checkin.bridge_point_id).where(
        Checkin.session_id == session_id, Checkin.checked_out_at.is_(None), Checkin.removed_at.is_(None)))
    return dict(Counter(rows))


async def expected_members(db: AsyncSession, session: Session, point_id: int) -> list[User]:
    """The active members expected at ``point_id``: their unit's nearest invited point is it."""
    homes = await home_points(db, session.id)
    units = [unit for unit, point in homes.items() if point == point_id]
    if not units:
        return []
    return list(await db.scalars(select(User).where(
        User.role == Role.MEMBER, User.active.is_(True), User.unit_id.in_(units))))


# Corrections by the operator, audited ---------------------------------------------------------------

def _audit(db: AsyncSession, actor: Principal, session_id: int, member_id: int, action: str,
           before: Checkin | dict[str, Any] | None, after: Checkin | None, reason: str, now: datetime) -> None:
    before_state = before if isinstance(before, dict) or before is None else checkin_state(before)
    db.add(AttendanceAudit(at=now, actor_id=actor.user_id, session_id=session_id, member_id=member_id, action=action,
                           before=audit_json(before_state), after=audit_json(checkin_state(after)), reason=reason))


def _may_change(principal: Principal, session: Session, reason: str) -> None:
    """Operators change check-ins while the session is scheduled or live; once it has ended, what was
    recorded counts in evaluations, and only an administrator corrects it, with a reason."""
    if session.status is SessionStatus.CANCELLED:
        raise Conflict("the session was cancelled", code="session_not_open")
    if session.status is SessionStatus.ENDED:
        if principal.role is not Role.ADMIN:
            raise Forbidden("the session has ended: only an administrator corrects its attendance",
                            code="ended_admin_only")
        if not reason.strip():
            raise ValidationFailed.one("reason", "reason_required",
                                       "give the reason: a change after the end is a correction")


async def remove(db: AsyncSession, principal: Principal, checkin_id: int, reason: str,
                 now: datetime | None = None) -> Checkin:
    """Mark a wrong check-in removed (a code sent to someone at home), audited."""
    now = now or utcnow()
    checkin = await db.get(Checkin, checkin_id)
    if checkin is None:
        raise NotFound(f"check-in {checkin_id} not found")
    session = await staff_session(db, principal, checkin.session_id)
    own = own_point(principal, session)
    if own is not None and checkin.bridge_point_id != own:
        raise Forbidden("this check-in is at another bridge point", code="other_point")
    _may_change(principal, session, reason)
    if checkin.removed_at is not None:
        raise Conflict("this check-in was already removed", code="already_removed")
    before = checkin_state(checkin)
    checkin.removed_at = now
    checkin.removed_by_id = principal.user_id
    await db.flush()
    _audit(db, principal, session.id, checkin.user_id, "checkin_removed", before, checkin, reason, now)
    await db.flush()
    return checkin


async def mark_present(db: AsyncSession, principal: Principal, session_id: int, member_id: int, *,
                       point_id: int | None = None, from_start: bool = False, reason: str = "",
                       now: datetime | None = None) -> CheckinOutcome:
    """The operator marks a member without a phone present at their point, audited."""
    now = now or utcnow()
    session = await staff_session(db, principal, session_id)
    point = own_point(principal, session, point_id)
    _may_change(principal, session, reason)
    member = await db.get(User, member_id)
    if member is None or member.role is not Role.MEMBER or not member.active:
        raise ValidationFailed.one("user_id", "not_a_member", "choose an active member")
    homes = await home_points(db, session.id)
    home = homes.get(member.unit_id) if member.unit_id is not None else None
    if home is None:
        raise Forbidden("this member is not expected at this session", code="other_units")
    point = home if point is None else point
    await _invited_point(db, session, point)
    if principal.role is Role.OPERATOR and home != point:
        raise Forbidden("this member is expected at another bridge point", code="other_point")
    at = now
    if from_start:
        if session.actual_start is None:
            raise Conflict("the session has not started: mark the member present from now", code="not_started")
        at = session.actual_start
    if session.status is SessionStatus.ENDED and session.actual_end is not None:
        at = min(at, session.actual_end)
    before_checkin = await _open_checkin(db, session.id, member.id)
    before = checkin_state(before_checkin)
    outcome = await _place(db, session.id, member.id, point, CheckinSource.MANUAL, at, now, principal.user_id)
    if outcome.created:
        _audit(db, principal, session.id, member.id, "marked_present", before, outcome.checkin, reason, now)
        await db.flush()
    return outcome


async def member_by(db: AsyncSession, username: str | None, user_id: int | None) -> int:
    """A member named by username or id (the manual-marking body)."""
    if user_id is not None:
        found = await db.get(User, user_id)
    else:
        found = await db.scalar(select(User).where(User.username == (username or "").lower()))
    if found is None:
        field = "user_id" if user_id is not None else "username"
        raise ValidationFailed.one(field, "unknown_user", "no such member")
    return found.id
