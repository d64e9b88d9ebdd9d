"""Pages: the dashboard and sessions (list, detail, create, edit, cancel)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from server import keys
from server.collation import sorted_by_name, vietnamese_key
from server.errors import AppError, ValidationFailed
from server.live.lifecycle import SessionAction, SessionStatus, can
from server.schemas import SESSION
from server.storage import sessions as session_store
from server.storage import recordings as recording_store
from server.storage import units as unit_store
from server.auth.roles import Role
from server.storage.models import Session, User, utcnow
from server.views import notify
from server.views.auth import current, require
from server.views.forms import form_values, parse_form, path_id
from server.views.render import render
from server.views.reports import report_scope

STATUS_FILTERS = {status.value: status for status in SessionStatus}


async def _speakers(db: Any) -> list[User]:
    query = select(User).where(User.role.in_([Role.SPEAKER, Role.ADMIN]), User.active.is_(True))
    return sorted(await db.scalars(query), key=lambda user: vietnamese_key(user.full_name))


@require()
async def dashboard(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    async with request.app[keys.DATABASE].session() as db:
        live, upcoming = await session_store.dashboard_sessions(db, principal, utcnow())
        point_ids = sorted({pid for s in live + upcoming for pid in s.invited_point_ids})
        points = await session_store.points_by_id(db, point_ids)
        own_point = await db.get(unit_store.BridgePoint, principal.bridge_point_id) if principal.bridge_point_id else None
    return render(request, "dashboard.html", {
        "live": live, "upcoming": upcoming, "points": points, "own_point": own_point,
        "changed": request.query.get("changed"),
    })


@require()
async def session_list(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    wanted = request.query.get("status", "")
    statuses = (STATUS_FILTERS[wanted],) if wanted in STATUS_FILTERS else None
    async with request.app[keys.DATABASE].session() as db:
        sessions = await session_store.list_sessions(db, principal, statuses=statuses)
    return render(request, "sessions.html", {"sessions": sessions, "status_filter": wanted,
                                             "statuses": list(SessionStatus)})


@require()
async def session_detail(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    async with request.app[keys.DATABASE].session() as db:
        session = await session_store.visible_session(db, principal, path_id(request))
        points = await session_store.points_by_id(db, session.invited_point_ids)
        speaker = await db.get(User, session.speaker_id) if session.speaker_id else None
        recordings = await recording_store.of_session(db, session.id)
    invited = sorted_by_name(points[pid] for pid in session.invited_point_ids if pid in points)
    return render(request, "session_detail.html", {
        "session": session, "invited": invited, "speaker": speaker,
        "can_edit": principal.is_admin and can(session.status, SessionAction.EDIT),
        "can_cancel": principal.is_admin and can(session.status, SessionAction.CANCEL),
        # The check-in list: the hall's operator, the speaker, an administrator (server/storage/checkins.py).
        "can_see_checkins": principal.role is not Role.MEMBER and session.status is not SessionStatus.CANCELLED,
        "can_report": report_scope(principal, session)[0],
        "recording": recordings[0] if recordings else None,
        "done": request.query.get("done"),
    })


async def _form_context(request: web.Request, session: Session | None) -> dict[str, Any]:
    async with request.app[keys.DATABASE].session() as db:
        speakers = await _speakers(db)
        points = [point for point in await unit_store.list_points(db, active_only=True) if not point.is_hub]
    return {"session": session, "speakers": speakers, "points": points}


def _session_form(session: Session) -> dict[str, Any]:
    return {
        "title": session.title, "description": session.description,
        "speaker_id": str(session.speaker_id or ""),
        "scheduled_start": session.scheduled_start, "scheduled_end": session.scheduled_end,
        "invited_point_ids": [str(pid) for pid in session.invited_point_ids],
        "record": "1" if session.record else "",
    }


@require(Role.ADMIN)
async def session_new(request: web.Request) -> web.StreamResponse:
    context = await _form_context(request, None)
    return render(request, "session_form.html", {**context, "form": {"invited_point_ids": [], "record": "1"}})


@require(Role.ADMIN)
async def session_create(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    raw = await form_values(request, SESSION)
    try:
        _, values = await parse_form(request, SESSION)
        async with request.app[keys.DATABASE].session() as db:
            session = await session_store.create_session(db, values, principal.user_id)
    except (ValidationFailed, AppError) as exc:
        return await _form_error(request, None, raw, exc)
    raise web.HTTPSeeOther(f"/sessions/{session.id}?done=created")


@require(Role.ADMIN)
async def session_edit(request: web.Request) -> web.StreamResponse:
    async with request.app[keys.DATABASE].session() as db:
        session = await session_store.get_session(db, path_id(request))
    context = await _form_context(request, session)
    return render(request, "session_form.html", {**context, "form": _session_form(session)})


@require(Role.ADMIN)
async def session_update(request: web.Request) -> web.StreamResponse:
    session_id = path_id(request)
    raw = await form_values(request, SESSION)
    try:
        _, values = await parse_form(request, SESSION)
        async with request.app[keys.DATABASE].session() as db:
            await session_store.update_session(db, session_id, values)
        await notify.session_changed(request.app, session_id)
    except (ValidationFailed, AppError) as exc:
        async with request.app[keys.DATABASE].session() as db:
            session = await session_store.get_session(db, session_id)
        return await _form_error(request, session, raw, exc)
    raise web.HTTPSeeOther(f"/sessions/{session_id}?done=saved")


async def _form_error(request: web.Request, session: Session | None, raw: dict[str, Any], exc: AppError) -> web.Response:
    if exc.status >= 500 or exc.status in (401, 403, 404):
        raise exc
    context = await _form_context(request, session)
    raw.setdefault("invited_point_ids", [])
    errors = exc.by_field() if isinstance(exc, ValidationFailed) else {"": exc.code}
    return render(request, "session_form.html", {**context, "form": raw, "errors": errors}, status=422)


@require(Role.ADMIN)
async def session_cancel(request: web.Request) -> web.StreamResponse:
    session_id = path_id(request)
    async with request.app[keys.DATABASE].session() as db:
        await session_store.apply_action(db, session_id, SessionAction.CANCEL)
    await notify.session_changed(request.app, session_id)
    raise web.HTTPSeeOther(f"/sessions/{session_id}?done=cancelled")
