"""The JSON API under /api/v1: the same resources as the pages, validated by the same schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from server import keys
from server.auth.tokens import issue_token
from server.errors import AppError, Forbidden, Unauthorized, UnsupportedMediaType, ValidationFailed
from server.live.lifecycle import SessionAction, SessionStatus
from server.schemas import BRIDGE_POINT, LOGIN, SESSION, UNIT, USER, USER_UPDATE
from server.storage import sessions as session_store
from server.storage import units as unit_store
from server.storage import users as user_store
from server.auth.roles import Role
from server.storage.models import BridgePoint, Session, Unit, User
from server.validation import Schema
from server.views import notify
from server.views.account_pages import check_credentials, revoke_current_token
from server.views.admin_pages import MAX_CSV_BYTES, guard_last_admin
from server.views.auth import current, require
from server.views.clients import set_device_cookie
from server.views.forms import int_arg, path_id, read_body

MAX_JSON_BYTES = 256 * 1024


def _iso(value: datetime | None) -> str | None:
    # Always UTC on the wire, whatever offset the client sent.
    return value.astimezone(UTC).isoformat() if value else None


def session_json(session: Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "title": session.title,
        "description": session.description,
        "speaker_id": session.speaker_id,
        "status": session.status.value,
        "scheduled_start": _iso(session.scheduled_start),
        "scheduled_end": _iso(session.scheduled_end),
        "actual_start": _iso(session.actual_start),
        "actual_end": _iso(session.actual_end),
        "invited_point_ids": session.invited_point_ids,
        "record": session.record,
    }


def unit_json(unit: Unit) -> dict[str, Any]:
    return {"id": unit.id, "name": unit.name, "slug": unit.slug, "level": unit.level.value, "parent_id": unit.parent_id}


def point_json(point: BridgePoint) -> dict[str, Any]:
    return {"id": point.id, "name": point.name, "slug": point.slug, "unit_id": point.unit_id,
            "location": point.location, "is_hub": point.is_hub, "active": point.active}


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "full_name": user.full_name, "email": user.email,
            "role": user.role.value, "unit_id": user.unit_id, "bridge_point_id": user.bridge_point_id,
            "active": user.active}


async def json_body(request: web.Request) -> Any:
    """The body as a JSON value; 415, 413, or 400 ``invalid_json``."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send application/json")
    raw = await read_body(request, MAX_JSON_BYTES)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AppError(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise AppError("the body is not valid JSON: nested too deeply", code="invalid_json") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise AppError(f"the body is not valid JSON: {exc}", code="invalid_json") from None


async def read_json(request: web.Request, schema: Schema, *, partial: bool = False) -> dict[str, Any]:
    """The body as JSON validated by ``schema``; 415, 413, 400 or 422 otherwise."""
    return schema.parse(await json_body(request), partial=partial)


# Auth ---------------------------------------------------------------------------

async def create_token(request: web.Request) -> web.StreamResponse:
    values = await read_json(request, LOGIN)
    user = await check_credentials(request, values["username"], values["password"])
    if user is None:
        raise Unauthorized("wrong username or password", code="invalid_credentials")
    ttl = request.app[keys.SETTINGS].auth.token_ttl_seconds
    token = issue_token(request.app[keys.JWT_SECRET], user.id, user.token_version, ttl)
    response = web.json_response({"token": token, "token_type": "Bearer", "expires_in": ttl,
                                  "user": user_json(user)}, status=201)
    # A script that keeps cookies is a known device of this account from now on (sign-in throttling).
    set_device_cookie(request, response, user.username)
    return response


@require(scoped=True)
async def revoke_token(request: web.Request) -> web.StreamResponse:
    """Sign this token out (a script's logout): refused everywhere from now on."""
    await revoke_current_token(request)
    return web.Response(status=204)


@require(scoped=True)
async def me(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    async with request.app[keys.DATABASE].session() as db:
        user = await user_store.get_user(db, principal.user_id)
    return web.json_response({**user_json(user), "session_scope": principal.session_scope})


# Sessions -------------------------------------------------------------------

@require()
async def list_sessions(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    wanted = request.query.get("status")
    if wanted is not None and wanted not in {s.value for s in SessionStatus}:
        raise ValidationFailed.one("status", "invalid_choice", "unknown status")
    async with request.app[keys.DATABASE].session() as db:
        sessions = await session_store.list_sessions(
            db, principal, statuses=(SessionStatus(wanted),) if wanted else None,
            limit=int_arg(request, "limit", 100, minimum=1, maximum=500), offset=int_arg(request, "offset", 0),
        )
    return web.json_response({"sessions": [session_json(s) for s in sessions]})


@require(Role.ADMIN)
async def create_session(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    values = await read_json(request, SESSION)
    async with request.app[keys.DATABASE].session() as db:
        session = await session_store.create_session(db, values, principal.user_id)
    return web.json_response(session_json(session), status=201, headers={"Location": f"/api/v1/sessions/{session.id}"})


@require(scoped=True)
async def get_session(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    session_id = path_id(request)
    if principal.session_scope not in (None, session_id):
        raise Forbidden("this token is for another session")
    async with request.app[keys.DATABASE].session() as db:
        session = await session_store.visible_session(db, principal, session_id)
    return web.json_response(session_json(session))


@require(Role.ADMIN)
async def update_session(request: web.Request) -> web.StreamResponse:
    values = await read_json(request, SESSION, partial=True)
    async with request.app[keys.DATABASE].session() as db:
        session = await session_store.update_session(db, path_id(request), values)
    await notify.session_changed(request.app, session.id)
    return web.json_response(session_json(session))


@require(Role.ADMIN)
async def cancel_session(request: web.Request) -> web.StreamResponse:
    async with request.app[keys.DATABASE].session() as db:
        session = await session_store.apply_action(db, path_id(request), SessionAction.CANCEL)
    await notify.session_changed(request.app, session.id)
    return web.json_response(session_json(session))


# Units and bridge points ----------------------------------------------------------

@require()
async def list_units(request: web.Request) -> web.StreamResponse:
    async with request.app[keys.DATABASE].session() as db:
        units = await unit_store.list_units(db)
    return web.json_response({"units": [unit_json(u) for u in units]})


@require(Role.ADMIN)
async def create_unit(request: web.Request) -> web.StreamResponse:
    values = await read_json(request, UNIT)
    async with request.app[keys.DATABASE].session() as db:
        unit = await unit_store.create_unit(db, values)
    return web.json_response(unit_json(unit), status=201, headers={"Location": f"/api/v1/units/{unit.id}"})


@require()
async def get_unit(request: web.Request) -> web.StreamResponse:
    async with request.app[keys.DATABASE].session() as db:
        unit = await unit_store.get_unit(db, path_id(request))
    return web.json_response(unit_json(unit))


@require(Role.ADMIN)
async def update_unit(request: web.Request) -> web.StreamResponse:
    values = await read_json(request, UNIT, partial=True)
    async with request.app[keys.DATABASE].session() as db:
        unit = await unit_store.update_unit(db, path_id(request), values)
    return web.json_response(unit_json(unit))


@require(Role.ADMIN)
async def delete_unit(request: web.Request) -> web.StreamResponse:
    async with request.app[keys.DATABASE].session() as db:
        await unit_store.delete_unit(db, path_id(request))
    return web.Response(status=204)


@require()
async def list_points(request: web.Request) -> web.StreamResponse:
    async with request.app[keys.DATABASE].session() as db:
        points = await unit_store.list_points(db)
    return web.json_response({"bridge_points": [point_json(p) for p in points]})


@require(Role.ADMIN)
async def create_point(request: web.Request) -> web.StreamResponse:
    values = await read_json(request, BRIDGE_POINT)
    async with request.app[keys.DATABASE].session() as db:
        point = await unit_store.create_point(db, values)
    return web.json_response(point_json(point), status=201, headers={"Location": f"/api/v1/bridge-points/{point.id}"})


@require()
async def get_point(request: web.Request) -> web.StreamResponse:
    async with request.app[keys.DATABASE].session() as db:
        point = await unit_store.get_point(db, path_id(request))
    return web.json_response(point_json(point))


@require(Role.ADMIN)
async def update_point(request: web.Request) -> web.StreamResponse:
    values = await read_json(request, BRIDGE_POINT, partial=True)
    async with request.app[keys.DATABASE].session() as db:
        point = await unit_store.update_point(db, path_id(request), values)
    return web.json_response(point_json(point))


@require(Role.ADMIN)
async def delete_point(request: web.Request) -> web.StreamResponse:
    async with request.app[keys.DATABASE].session() as db:
        await unit_store.delete_point(db, path_id(request))
    return web.Response(status=204)


# Users ------------------------------------------------------------------------------

@require(Role.ADMIN)
async def list_users(request: web.Request) -> web.StreamResponse:
    role = request.query.get("role")
    if role is not None and role not in {r.value for r in Role}:
        raise ValidationFailed.one("role", "invalid_choice", "unknown role")
    async with request.app[keys.DATABASE].session() as db:
        users, total = await user_store.list_users(
            db, role=Role(role) if role else None, search=request.query.get("q", "")[:100],
            offset=int_arg(request, "offset", 0), limit=int_arg(request, "limit", 100, minimum=1, maximum=500),
        )
    return web.json_response({"users": [user_json(u) for u in users], "total": total})


@require(Role.ADMIN)
async def create_user(request: web.Request) -> web.StreamResponse:
    values = await read_json(request, USER)
    async with request.app[keys.DATABASE].session() as db:
        user = await user_store.create_user(db, values)
    return web.json_response(user_json(user), status=201, headers={"Location": f"/api/v1/users/{user.id}"})


@require(Role.ADMIN)
async def get_user(request: web.Request) -> web.StreamResponse:
    async with request.app[keys.DATABASE].session() as db:
        user = await user_store.get_user(db, path_id(request))
    return web.json_response(user_json(user))


@require(Role.ADMIN)
async def update_user(request: web.Request) -> web.StreamResponse:
    values = await read_json(request, USER_UPDATE, partial=True)
    user_id = path_id(request)
    async with request.app[keys.DATABASE].session() as db:
        await guard_last_admin(db, user_id, values)
        before = notify.account_state(await user_store.get_user(db, user_id))
        user = await user_store.update_user(db, user_id, values)
    # Revoked tokens end live connections too, not only the next request; a moved operator rejoins.
    await notify.user_updated(request.app, before, user)
    return web.json_response(user_json(user))


@require(Role.ADMIN)
async def import_users(request: web.Request) -> web.StreamResponse:
    if request.content_type != "text/csv":
        raise UnsupportedMediaType("send text/csv")
    raw = await read_body(request, MAX_CSV_BYTES, "the file")
    async with request.app[keys.DATABASE].session() as db:
        report = await user_store.import_members(db, raw)
    if not report.ok:
        errors = [{"line": line, "field": field, "code": code, "message": message}
                  for line, field, code, message in report.errors]
        raise ValidationFailed(errors, "no user was created: fix the listed rows")
    return web.json_response({"created": report.created}, status=201)
