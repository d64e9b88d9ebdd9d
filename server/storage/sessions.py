"""Sessions: scheduling, visibility by role, and status changes through the lifecycle rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.principal import Principal
from server.errors import Conflict, NotFound, ValidationFailed
from server.live.lifecycle import SessionAction, SessionStatus, TransitionError, transition
from server.auth.roles import Role
from server.storage.models import BridgePoint, Session, SessionInvite, User, utcnow
from server.storage.units import ancestors_query


async def visible_only(db: AsyncSession, principal: Principal, query: Select[tuple[Session]]) -> Select[tuple[Session]]:
    """Restrict a query to the sessions the caller may see."""
    if principal.role is Role.ADMIN:
        return query
    if principal.role is Role.SPEAKER:
        return query.where(Session.speaker_id == principal.user_id)
    if principal.role is Role.OPERATOR:
        invited = select(SessionInvite.session_id).where(SessionInvite.bridge_point_id == principal.bridge_point_id)
        return query.where(Session.id.in_(invited))
    # A member sees the sessions shown in a hall of their unit or of a unit above it
    # (one query: the chain of units above is a recursive subquery, not a query per level).
    if principal.unit_id is None:
        return query.where(False)
    invited = (
        select(SessionInvite.session_id)
        .join(BridgePoint, BridgePoint.id == SessionInvite.bridge_point_id)
        .where(BridgePoint.unit_id.in_(ancestors_query(principal.unit_id)))
    )
    return query.where(Session.id.in_(invited))


async def list_sessions(
    db: AsyncSession,
    principal: Principal,
    *,
    statuses: tuple[SessionStatus, ...] | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[Session]:
    query = await visible_only(db, principal, select(Session))
    if statuses:
        query = query.where(Session.status.in_(statuses))
    query = query.order_by(Session.scheduled_start.desc(), Session.id.desc()).offset(offset).limit(limit)
    return list(await db.scalars(query))


async def dashboard_sessions(db: AsyncSession, principal: Principal, now: datetime) -> tuple[list[Session], list[Session]]:
    """(live, upcoming) sessions for the caller, live first, upcoming soonest first."""
    query = await visible_only(db, principal, select(Session))
    live = await db.scalars(query.where(Session.status == SessionStatus.LIVE).order_by(Session.actual_start))
    upcoming = await db.scalars(
        query.where(Session.status == SessionStatus.SCHEDULED, Session.scheduled_end >= now)
        .order_by(Session.scheduled_start)
        .limit(20)
    )
    return list(live), list(upcoming)


async def get_session(db: AsyncSession, session_id: int) -> Session:
    session = await db.get(Session, session_id)
    if session is None:
        raise NotFound(f"session {session_id} not found")
    return session


# Why a session may be hidden from a role: a stable code the pages translate (server/i18n.py).
# A missing session and a hidden one get the same answer (404, the caller's role's code), so that
# nobody learns which sessions exist by asking for ids one by one.
_REFUSALS = {
    Role.SPEAKER: ("not_speaker", "no such session among those you present"),
    Role.OPERATOR: ("not_invited", "no such session among those your bridge point is invited to"),
    Role.MEMBER: ("other_units", "no such session among those shown in your unit's halls"),
}


def _unseen(principal: Principal, session_id: int) -> NotFound:
    code, message = _REFUSALS.get(principal.role, ("not_found", f"session {session_id} not found"))
    return NotFound(message, code=code)


async def check_visible(db: AsyncSession, principal: Principal, session_id: int) -> None:
    """Raise unless the caller may see the session: one query on the way in (websockets, WHIP, WHEP)."""
    query = await visible_only(db, principal, select(Session.id).where(Session.id == session_id))  # type: ignore[arg-type]
    if await db.scalar(query) is None:
        raise _unseen(principal, session_id)


async def visible_session(db: AsyncSession, principal: Principal, session_id: int) -> Session:
    """The session if the caller may see it; else NotFound, the same for a missing and a hidden one."""
    query = await visible_only(db, principal, select(Session.id).where(Session.id == session_id))  # type: ignore[arg-type]
    if await db.scalar(query) is None:
        raise _unseen(principal, session_id)
    return await get_session(db, session_id)


async def _check(db: AsyncSession, data: dict[str, Any], session: Session | None) -> None:
    start = data.get("scheduled_start", session.scheduled_start if session else None)
    end = data.get("scheduled_end", session.scheduled_end if session else None)
    if start is not None and end is not None and end <= start:
        raise ValidationFailed.one("scheduled_end", "end_before_start", "the end must be after the start")
    if data.get("speaker_id") is not None:
        speaker = await db.get(User, data["speaker_id"])
        if speaker is None or not speaker.active or speaker.role not in (Role.SPEAKER, Role.ADMIN):
            raise ValidationFailed.one("speaker_id", "not_a_speaker", "the speaker must be an active speaker or admin")
    point_ids = data.get("invited_point_ids")
    if point_ids:
        points = list(await db.scalars(select(BridgePoint).where(BridgePoint.id.in_(point_ids))))
        found = {point.id for point in points}
        missing = [pid for pid in point_ids if pid not in found]
        if missing:
            raise ValidationFailed.one("invited_point_ids", "unknown_point", f"no bridge point {missing[0]}")
        if any(point.is_hub for point in points):
            raise ValidationFailed.one("invited_point_ids", "hub_invited", "the hub hosts the session: invite halls")
        if any(not point.active for point in points):
            raise ValidationFailed.one("invited_point_ids", "inactive_point", "an invited bridge point is inactive")


async def create_session(db: AsyncSession, data: dict[str, Any], created_by: int | None) -> Session:
    await _check(db, data, None)
    values = dict(data)
    point_ids = values.pop("invited_point_ids", []) or []
    session = Session(**values, status=SessionStatus.SCHEDULED, created_by_id=created_by)
    session.invites = [SessionInvite(bridge_point_id=pid) for pid in point_ids]
    db.add(session)
    await db.flush()
    return session


async def update_session(db: AsyncSession, session_id: int, data: dict[str, Any]) -> Session:
    session = await get_session(db, session_id)
    try:
        transition(session.status, SessionAction.EDIT)
    except TransitionError as exc:
        raise Conflict(str(exc), code=exc.code) from None
    if session.status is not SessionStatus.SCHEDULED and _schedule_changes(session, data):
        raise Conflict("a live session keeps its schedule, speaker and invitations", code="session_live")
    await _check(db, data, session)
    values = dict(data)
    point_ids = values.pop("invited_point_ids", None)
    for key, value in values.items():
        setattr(session, key, value)
    if point_ids is not None:
        keep = {invite.bridge_point_id: invite for invite in session.invites}
        session.invites = [keep.get(pid) or SessionInvite(bridge_point_id=pid) for pid in point_ids]
    session.updated_at = utcnow()
    await db.flush()
    return session


def _schedule_changes(session: Session, data: dict[str, Any]) -> list[str]:
    """The schedule fields ``data`` really changes (a form re-sends them all).

    Invitations compare as sets, times to the minute (forms have no seconds).
    """
    changed = []
    if "invited_point_ids" in data and set(data["invited_point_ids"]) != set(session.invited_point_ids):
        changed.append("invited_point_ids")
    if "speaker_id" in data and data["speaker_id"] != session.speaker_id:
        changed.append("speaker_id")
    for key in ("scheduled_start", "scheduled_end"):
        if key in data:
            new, old = data[key].replace(second=0, microsecond=0), getattr(session, key).replace(second=0, microsecond=0)
            if new != old:
                changed.append(key)
    return changed


async def apply_action(db: AsyncSession, session_id: int, action: SessionAction, now: datetime | None = None) -> Session:
    """Start, end or cancel: the lifecycle decides whether the status allows it."""
    session = await get_session(db, session_id)
    try:
        session.status = transition(session.status, action)
    except TransitionError as exc:
        raise Conflict(str(exc), code=exc.code) from None
    moment = now or utcnow()
    if action is SessionAction.START:
        session.actual_start = moment
    elif action is SessionAction.END:
        session.actual_end = moment
    session.updated_at = moment
    await db.flush()
    return session


async def points_by_id(db: AsyncSession, point_ids: list[int]) -> dict[int, BridgePoint]:
    if not point_ids:
        return {}
    return {point.id: point for point in await db.scalars(select(BridgePoint).where(BridgePoint.id.in_(point_ids)))}
