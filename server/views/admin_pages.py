"""Administration pages: units, bridge points, users and the members CSV import."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server import keys
from server.errors import AppError, Conflict, PayloadTooLarge, ValidationFailed
from server.schemas import BRIDGE_POINT, UNIT, USER, USER_UPDATE
from server.storage import units as unit_store
from server.storage import users as user_store
from server.auth.roles import Role
from server.storage.models import UnitLevel
from server.validation import Schema
from server.views import notify
from server.views.auth import current, require
from server.views.forms import form_values, int_arg, path_id
from server.views.render import render

PAGE_SIZE = 50
MAX_CSV_BYTES = 2 * 1024 * 1024


def _errors(exc: AppError) -> dict[str, str]:
    if isinstance(exc, ValidationFailed):
        return exc.by_field()
    for item in exc.details or []:
        if isinstance(item, dict) and "field" in item:
            return {item["field"]: exc.code}
    return {"": exc.code}


async def _submit(request: web.Request, schema: Schema, *, partial: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = await form_values(request, schema)
    values = schema.parse(raw, forms=True, partial=partial, local_zone=request.app[keys.SETTINGS].zone)
    return raw, values


# Units ---------------------------------------------------------------------

async def _units_page(request: web.Request, *, form: dict[str, Any] | None = None,
                      errors: dict[str, str] | None = None, status: int = 200) -> web.Response:
    async with request.app[keys.DATABASE].session() as db:
        units = await unit_store.list_units(db)
    return render(request, "units.html", {"units": units, "by_id": {u.id: u for u in units},
                                          "levels": list(UnitLevel), "form": form or {}, "errors": errors or {},
                                          "done": request.query.get("done")}, status=status)


@require(Role.ADMIN)
async def units_page(request: web.Request) -> web.StreamResponse:
    return await _units_page(request)


@require(Role.ADMIN)
async def unit_create(request: web.Request) -> web.StreamResponse:
    raw = await form_values(request, UNIT)
    try:
        _, values = await _submit(request, UNIT)
        async with request.app[keys.DATABASE].session() as db:
            await unit_store.create_unit(db, values)
    except AppError as exc:
        return await _units_page(request, form=raw, errors=_errors(exc), status=422)
    raise web.HTTPSeeOther("/units?done=created")


@require(Role.ADMIN)
async def unit_edit(request: web.Request) -> web.StreamResponse:
    async with request.app[keys.DATABASE].session() as db:
        unit = await unit_store.get_unit(db, path_id(request))
        units = await unit_store.list_units(db)
    form = {"name": unit.name, "slug": unit.slug, "level": unit.level.value, "parent_id": str(unit.parent_id or "")}
    return render(request, "unit_form.html", {"unit": unit, "units": units, "levels": list(UnitLevel), "form": form})


@require(Role.ADMIN)
async def unit_update(request: web.Request) -> web.StreamResponse:
    unit_id = path_id(request)
    raw = await form_values(request, UNIT)
    try:
        _, values = await _submit(request, UNIT)
        async with request.app[keys.DATABASE].session() as db:
            await unit_store.update_unit(db, unit_id, values)
    except AppError as exc:
        if exc.status == 404:
            raise
        async with request.app[keys.DATABASE].session() as db:
            unit = await unit_store.get_unit(db, unit_id)
            units = await unit_store.list_units(db)
        return render(request, "unit_form.html", {"unit": unit, "units": units, "levels": list(UnitLevel),
                                                  "form": raw, "errors": _errors(exc)}, status=422)
    raise web.HTTPSeeOther("/units?done=saved")


@require(Role.ADMIN)
async def unit_delete(request: web.Request) -> web.StreamResponse:
    try:
        async with request.app[keys.DATABASE].session() as db:
            await unit_store.delete_unit(db, path_id(request))
    except Conflict as exc:
        return await _units_page(request, errors={"": exc.code}, status=409)
    raise web.HTTPSeeOther("/units?done=deleted")


# Bridge points --------------------------------------------------------------

async def _points_page(request: web.Request, *, form: dict[str, Any] | None = None,
                       errors: dict[str, str] | None = None, status: int = 200) -> web.Response:
    async with request.app[keys.DATABASE].session() as db:
        points = await unit_store.list_points(db)
        units = await unit_store.list_units(db)
    return render(request, "bridge_points.html", {"points": points, "units": units,
                                                  "units_by_id": {u.id: u for u in units},
                                                  "form": form or {"active": "1"}, "errors": errors or {},
                                                  "done": request.query.get("done")}, status=status)


@require(Role.ADMIN)
async def points_page(request: web.Request) -> web.StreamResponse:
    return await _points_page(request)


@require(Role.ADMIN)
async def point_create(request: web.Request) -> web.StreamResponse:
    raw = await form_values(request, BRIDGE_POINT)
    try:
        _, values = await _submit(request, BRIDGE_POINT)
        async with request.app[keys.DATABASE].session() as db:
            await unit_store.create_point(db, values)
    except AppError as exc:
        return await _points_page(request, form=raw, errors=_errors(exc), status=422)
    raise web.HTTPSeeOther("/bridge-points?done=created")


@require(Role.ADMIN)
async def point_edit(request: web.Request) -> web.StreamResponse:
    async with request.app[keys.DATABASE].session() as db:
        point = await unit_store.get_point(db, path_id(request))
        units = await unit_store.list_units(db)
    form = {"name": point.name, "slug": point.slug, "unit_id": str(point.unit_id), "location": point.location,
            "is_hub": "1" if point.is_hub else "", "active": "1" if point.active else ""}
    return render(request, "bridge_point_form.html", {"point": point, "units": units, "form": form})


@require(Role.ADMIN)
async def point_update(request: web.Request) -> web.StreamResponse:
    point_id = path_id(request)
    raw = await form_values(request, BRIDGE_POINT)
    try:
        _, values = await _submit(request, BRIDGE_POINT)
        async with request.app[keys.DATABASE].session() as db:
            await unit_store.update_point(db, point_id, values)
    except AppError as exc:
        if exc.status == 404:
            raise
        async with request.app[keys.DATABASE].session() as db:
            point = await unit_store.get_point(db, point_id)
            units = await unit_store.list_units(db)
        return render(request, "bridge_point_form.html", {"point": point, "units": units, "form": raw,
                                                          "errors": _errors(exc)}, status=422)
    raise web.HTTPSeeOther("/bridge-points?done=saved")


@require(Role.ADMIN)
async def point_delete(request: web.Request) -> web.StreamResponse:
    try:
        async with request.app[keys.DATABASE].session() as db:
            await unit_store.delete_point(db, path_id(request))
    except Conflict as exc:
        return await _points_page(request, errors={"": exc.code}, status=409)
    raise web.HTTPSeeOther("/bridge-points?done=deleted")


# Users ------------------------------------------------------------------------

async def _users_page(request: web.Request, *, form: dict[str, Any] | None = None,
                      errors: dict[str, str] | None = None, status: int = 200) -> web.Response:
    role = request.query.get("role", "")
    search = request.query.get("q", "")[:100]
    page = int_arg(request, "page", 1, minimum=1)
    async with request.app[keys.DATABASE].session() as db:
        users, total = await user_store.list_users(
            db, role=Role(role) if role in Role.__members__.values() else None, search=search,
            offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE,
        )
        units = await unit_store.list_units(db)
        points = await unit_store.list_points(db)
    return render(request, "users.html", {
        "users": users, "total": total, "page": page, "pages": max(1, -(-total // PAGE_SIZE)),
        "role_filter": role, "q": search, "roles": list(Role), "units": units, "points": points,
        "units_by_id": {u.id: u for u in units}, "points_by_id": {p.id: p for p in points},
        "form": form or {"role": "member", "active": "1"}, "errors": errors or {}, "done": request.query.get("done"),
    }, status=status)


@require(Role.ADMIN)
async def users_page(request: web.Request) -> web.StreamResponse:
    return await _users_page(request)


@require(Role.ADMIN)
async def user_create(request: web.Request) -> web.StreamResponse:
    raw = await form_values(request, USER)
    try:
        _, values = await _submit(request, USER)
        async with request.app[keys.DATABASE].session() as db:
            await user_store.create_user(db, values)
    except AppError as exc:
        raw.pop("password", None)
        return await _users_page(request, form=raw, errors=_errors(exc), status=422)
    raise web.HTTPSeeOther("/users?done=created")


async def _user_form(request: web.Request, user_id: int, form: dict[str, Any] | None,
                     errors: dict[str, str] | None, status: int = 200) -> web.Response:
    async with request.app[keys.DATABASE].session() as db:
        user = await user_store.get_user(db, user_id)
        units = await unit_store.list_units(db)
        points = await unit_store.list_points(db)
    if form is None:
        form = {"full_name": user.full_name, "email": user.email, "role": user.role.value,
                "unit_id": str(user.unit_id or ""), "bridge_point_id": str(user.bridge_point_id or ""),
                "active": "1" if user.active else ""}
    return render(request, "user_form.html", {"edited": user, "units": units, "points": points, "roles": list(Role),
                                              "form": form, "errors": errors or {}}, status=status)


@require(Role.ADMIN)
async def user_edit(request: web.Request) -> web.StreamResponse:
    return await _user_form(request, path_id(request), None, None)


@require(Role.ADMIN)
async def user_update(request: web.Request) -> web.StreamResponse:
    user_id = path_id(request)
    principal = current(request)
    assert principal is not None
    raw = await form_values(request, USER_UPDATE)
    try:
        _, values = await _submit(request, USER_UPDATE)
        if not values.get("password"):
            values.pop("password", None)
        async with request.app[keys.DATABASE].session() as db:
            await guard_last_admin(db, user_id, values)
            before = notify.account_state(await user_store.get_user(db, user_id))
            user = await user_store.update_user(db, user_id, values)
        await notify.user_updated(request.app, before, user)
    except AppError as exc:
        if exc.status == 404:
            raise
        raw.pop("password", None)
        return await _user_form(request, user_id, raw, _errors(exc), status=422)
    raise web.HTTPSeeOther("/users?done=saved")


async def guard_last_admin(db: Any, user_id: int, values: dict[str, Any]) -> None:
    """Refuse a change that would leave no active administrator."""
    user = await user_store.get_user(db, user_id)
    demoted = values.get("role", user.role) != Role.ADMIN or values.get("active", True) is False
    if user.role is Role.ADMIN and user.active and demoted and await user_store.count_admins(db) <= 1:
        raise Conflict("at least one active administrator must remain", code="last_admin")


@require(Role.ADMIN)
async def import_page(request: web.Request) -> web.StreamResponse:
    return render(request, "users_import.html", {"report": None})


@require(Role.ADMIN)
async def import_submit(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    upload = posted.get("file")
    data = getattr(upload, "file", None)
    if data is None:
        return render(request, "users_import.html", {"report": None, "missing": True}, status=422)
    raw = data.read(MAX_CSV_BYTES + 1)
    if len(raw) > MAX_CSV_BYTES:
        raise PayloadTooLarge("the file is larger than 2 MiB")
    async with request.app[keys.DATABASE].session() as db:
        report = await user_store.import_members(db, raw)
    return render(request, "users_import.html", {"report": report}, status=200 if report.ok else 422)
