"""Attendance reports: per session, per member, per unit; as pages, JSON and spreadsheets; corrections.

Who may read what (checked here, for the API and the pages alike):

* a session's report: administrators, the session's speaker, and an operator
  of an invited point, who sees only their own point's row and members;
* a member's history: the member, administrators, and the operators of a
  point whose unit is the member's or above it;
* a unit's figures: administrators, and an operator for their point's unit
  and the units below it;
* corrections: administrators only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from server import keys
from server.attendance import export
from server.auth.principal import Principal
from server.auth.roles import Role
from server.errors import AppError, Forbidden, ValidationFailed
from server.schemas import ATTENDANCE_CORRECTION
from server.storage import attendance as attendance_store
from server.storage import reports as report_store
from server.storage.models import BridgePoint, Session, Unit, User, utcnow
from server.storage.sessions import get_session, visible_session
from server.storage.units import descendant_ids, get_unit, list_units, unit_tree
from server.storage.users import user_by_username
from server.views.api import read_json
from server.views.auth import current, require
from server.views.forms import int_arg, path_id
from server.validation import digits
from server.views.render import render, translator

FORMATS = ("json", "csv", "xlsx")
PAGE_SIZE = 200
# A unit report covers at most this many days (a few years of sessions).
MAX_RANGE_DAYS = 3 * 366
CSV_TYPE = "text/csv"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _principal(request: web.Request) -> Principal:
    principal = current(request)
    assert principal is not None
    return principal


# --- who may see what --------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionView:
    session: Session
    point_id: int | None  # an operator's own point: the report is cut to it


def report_scope(principal: Principal, session: Session) -> tuple[bool, int | None]:
    """(may read the session's report, the one point it is cut to)."""
    if principal.is_admin or (principal.role is Role.SPEAKER and session.speaker_id == principal.user_id):
        return True, None
    if principal.role is Role.OPERATOR and principal.bridge_point_id in session.invited_point_ids:
        return True, principal.bridge_point_id
    return False, None


async def _session_view(request: web.Request, session_id: int) -> SessionView:
    async with request.app[keys.DATABASE].session() as db:
        # A session the caller may not see is answered as a missing one (no existence oracle);
        # one it sees but whose report is not its to read is refused.
        session = await visible_session(db, _principal(request), session_id)
    allowed, point_id = report_scope(_principal(request), session)
    if allowed:
        return SessionView(session, point_id)
    raise Forbidden("only administrators, the session's speaker and its operators see its attendance",
                    code="forbidden")


async def _operator_units(request: web.Request, principal: Principal) -> list[int]:
    """The units an operator answers for: their point's unit and the units below it."""
    async with request.app[keys.DATABASE].session() as db:
        point = await db.get(BridgePoint, principal.bridge_point_id) if principal.bridge_point_id else None
        return await descendant_ids(db, point.unit_id) if point is not None else []


async def _check_member(request: web.Request, user_id: int) -> None:
    principal = _principal(request)
    if principal.is_admin or principal.user_id == user_id:
        return
    if principal.role is Role.OPERATOR:
        async with request.app[keys.DATABASE].session() as db:
            user = await db.get(User, user_id)
        if user is not None and user.unit_id in await _operator_units(request, principal):
            return
    raise Forbidden("you may see your own attendance, and an operator that of their units' members")


async def _check_unit(request: web.Request, unit_id: int) -> None:
    principal = _principal(request)
    if principal.is_admin:
        return
    if principal.role is Role.OPERATOR and unit_id in await _operator_units(request, principal):
        return
    raise Forbidden("only administrators, and operators for their own units, see unit reports")


# --- reading input -----------------------------------------------------------------------------


def _format(request: web.Request) -> str:
    wanted = request.query.get("format", "json")
    if wanted not in FORMATS:
        raise ValidationFailed.one("format", "invalid_choice", "format must be json, csv or xlsx")
    return wanted


def _date(request: web.Request, name: str, default: date) -> date:
    raw = request.query.get(name, "")
    if raw == "":
        return default
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise ValidationFailed.one(name, "not_date", f"{name} must be a date, YYYY-MM-DD")
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed.one(name, "not_date", f"{name} must be a real date") from None
    if not 2000 <= value.year <= 2200:
        raise ValidationFailed.one(name, "out_of_range", "year must be between 2000 and 2200")
    return value


def _period(request: web.Request) -> tuple[date, date]:
    """``from`` and ``to`` (local dates, both included); by default this year so far."""
    today = utcnow().astimezone(request.app[keys.SETTINGS].zone).date()
    start = _date(request, "from", date(today.year, 1, 1))
    end = _date(request, "to", today)
    if end < start:
        raise ValidationFailed.one("to", "end_before_start", "to must not be before from")
    if (end - start).days > MAX_RANGE_DAYS:
        raise ValidationFailed.one("to", "range_too_long", f"at most {MAX_RANGE_DAYS} days")
    return start, end


# --- per session -------------------------------------------------------------------------------


async def _session_report(request: web.Request, session_id: int) -> tuple[SessionView, Any]:
    view = await _session_view(request, session_id)
    async with request.app[keys.DATABASE].session() as db:
        report = await attendance_store.session_report(db, session_id, request.app[keys.CREDIT_RULE])
    if view.point_id is not None:
        report.members = [m for m in report.members if m.bridge_point_id == view.point_id]
        report.points = [p for p in report.points if p.bridge_point_id == view.point_id]
    return view, report


def _download(body: bytes, content_type: str, names: tuple[str, str]) -> web.Response:
    ascii_name, unicode_name = names
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(unicode_name, safe='')}"
    response = web.Response(body=body, content_type=content_type,
                            headers={"Content-Disposition": disposition, "Cache-Control": "no-store"})
    if content_type == CSV_TYPE:
        response.charset = "utf-8"
    return response


def session_export(report: Any, session: Session, fmt: str, _: export.Gettext, zone: Any) -> tuple[bytes, str, tuple[str, str]]:
    """(bytes, content type, file names) of a session's member table as CSV or XLSX."""
    rows = (m.api() for m in report.members)
    heading = export.heading_lines(report, _, zone)
    if fmt == "csv":
        body = export.csv_bytes(rows, _, heading=heading, rule=report.rule)
        return body, CSV_TYPE, export.file_names(report, session.scheduled_start, zone, "csv")
    body = export.xlsx_bytes(rows, _, title=_("Attendance"), heading=heading, rule=report.rule,
                             points=[p.api() for p in report.points])
    return body, XLSX_TYPE, export.file_names(report, session.scheduled_start, zone, "xlsx")


@require(Role.ADMIN, Role.SPEAKER, Role.OPERATOR)
async def session_attendance(request: web.Request) -> web.StreamResponse:
    fmt = _format(request)
    view, report = await _session_report(request, path_id(request))
    if fmt == "json":
        return web.json_response(report.api())
    zone = request.app[keys.SETTINGS].zone
    return _download(*session_export(report, view.session, fmt, translator(request), zone))


async def _correction_target(request: web.Request, values: dict[str, Any]) -> int:
    if ("username" in values) == ("user_id" in values):
        code = "one_of" if "username" in values else "required"
        raise ValidationFailed.one("username", code, "give username or user_id, one of them")
    if "status" not in values and "credited_seconds" not in values:
        raise ValidationFailed.one("status", "required", "give status, credited_seconds or both")
    if "user_id" in values:
        return int(values["user_id"])
    async with request.app[keys.DATABASE].session() as db:
        user = await user_by_username(db, values["username"])
    if user is None:
        raise ValidationFailed.one("username", "unknown_user", "no user with this username")
    return user.id


async def _correct(request: web.Request, session_id: int, values: dict[str, Any]) -> Any:
    user_id = await _correction_target(request, values)
    async with request.app[keys.DATABASE].session() as db:
        await get_session(db, session_id)
        return await attendance_store.correct(
            db, session_id, user_id, status=values.get("status"), credited_seconds=values.get("credited_seconds"),
            reason=values["reason"], actor_id=_principal(request).user_id, rule=request.app[keys.CREDIT_RULE])


@require(Role.ADMIN)
async def create_correction(request: web.Request) -> web.StreamResponse:
    session_id = path_id(request)
    values = await read_json(request, ATTENDANCE_CORRECTION)
    row = await _correct(request, session_id, values)
    return web.json_response(row.api(), status=201)


@require(Role.ADMIN, Role.SPEAKER, Role.OPERATOR)
async def session_attendance_page(request: web.Request) -> web.StreamResponse:
    session_id = path_id(request)
    view, report = await _session_report(request, session_id)
    return _render_session(request, view, report)


def _render_session(request: web.Request, view: SessionView, report: Any, *, form: dict[str, Any] | None = None,
                    errors: dict[str, str] | None = None, status: int = 200) -> web.Response:
    wanted = request.query.get("status", "")
    members = [m for m in report.members if m.status == wanted] if wanted in export.STATUS_LABELS else report.members
    pages = max(1, -(-len(members) // PAGE_SIZE))
    page = min(int_arg(request, "page", 1, minimum=1), pages)
    counts = {status: sum(1 for m in report.members if m.status == status) for status in export.STATUS_LABELS}
    return render(request, "attendance_session.html", {
        "session": view.session, "report": report, "members": members[(page - 1) * PAGE_SIZE:page * PAGE_SIZE],
        "shown": len(members), "page": page, "pages": pages, "status_filter": wanted, "counts": counts,
        "rule_lines": export.rule_lines(report.rule, translator(request)),
        "corrections": [(m, datetime.fromisoformat(m.correction["at"])) for m in report.members if m.correction],
        "can_correct": _principal(request).is_admin and report.live_start is not None,
        "own_point_only": view.point_id is not None, "done": request.query.get("done"),
        "form": form or {}, "errors": errors or {},
    }, status=status)


@require(Role.ADMIN)
async def correction_submit(request: web.Request) -> web.StreamResponse:
    """The report page's correction form: minutes in, seconds stored."""
    session_id = path_id(request)
    posted = await request.post()
    raw = {name: value.strip() for name in ("username", "status", "credited_minutes", "reason")
           if isinstance(value := posted.get(name, ""), str)}
    values: dict[str, Any] = {"username": raw.get("username", ""), "reason": raw.get("reason", "")}
    if raw.get("status"):
        values["status"] = raw["status"]
    try:
        minutes = raw.get("credited_minutes", "")
        if minutes:
            if not re.fullmatch(r"\d{1,6}", minutes):
                raise ValidationFailed.one("credited_minutes", "not_integer", "whole minutes")
            values["credited_seconds"] = int(minutes) * 60
        parsed = ATTENDANCE_CORRECTION.parse(values)
        if "status" not in parsed and "credited_seconds" not in parsed:
            raise ValidationFailed.one("status", "nothing_to_correct", "give a result or credited minutes")
        await _correct(request, session_id, parsed)
    except (ValidationFailed, AppError) as exc:
        if exc.status >= 500 or exc.status in (401, 403, 404):
            raise
        view, report = await _session_report(request, session_id)
        errors = exc.by_field() if isinstance(exc, ValidationFailed) else {"": exc.code}
        if "credited_seconds" in errors:
            errors["credited_minutes"] = errors.pop("credited_seconds")
        return _render_session(request, view, report, form=raw, errors=errors, status=422)
    raise web.HTTPSeeOther(f"/sessions/{session_id}/attendance?done=corrected#corrections")


# --- per member --------------------------------------------------------------------------------


@require()
async def user_attendance(request: web.Request) -> web.StreamResponse:
    user_id = path_id(request)
    await _check_member(request, user_id)
    history = await report_store.member_history(request.app[keys.DATABASE], user_id, request.app[keys.CREDIT_RULE])
    return web.json_response(history.api(request.app[keys.CREDIT_RULE]))


@require()
async def user_attendance_page(request: web.Request) -> web.StreamResponse:
    user_id = path_id(request)
    await _check_member(request, user_id)
    rule = request.app[keys.CREDIT_RULE]
    history = await report_store.member_history(request.app[keys.DATABASE], user_id, rule)
    return render(request, "attendance_member.html", {
        "history": history, "rule_lines": export.rule_lines(rule, translator(request)),
    })


# --- per unit ----------------------------------------------------------------------------------


async def _unit_report(request: web.Request, unit_id: int) -> Any:
    start, end = _period(request)
    async with request.app[keys.DATABASE].session() as db:
        await get_unit(db, unit_id)
    await _check_unit(request, unit_id)
    return await report_store.unit_report(request.app[keys.DATABASE], unit_id, start, end,
                                          request.app[keys.SETTINGS].zone, request.app[keys.CREDIT_RULE])


@require(Role.ADMIN, Role.OPERATOR)
async def unit_attendance(request: web.Request) -> web.StreamResponse:
    report = await _unit_report(request, path_id(request))
    return web.json_response(report.api(request.app[keys.CREDIT_RULE]))


async def _default_unit(request: web.Request, principal: Principal) -> int | None:
    async with request.app[keys.DATABASE].session() as db:
        if principal.is_admin:
            tops = (await unit_tree(db)).get(None, [])
            return tops[0] if tops else None
        point = await db.get(BridgePoint, principal.bridge_point_id) if principal.bridge_point_id else None
        return point.unit_id if point else None


@require(Role.ADMIN, Role.OPERATOR)
async def units_report_page(request: web.Request) -> web.StreamResponse:
    principal = _principal(request)
    raw_unit = request.query.get("unit", "")
    today = utcnow().astimezone(request.app[keys.SETTINGS].zone).date()
    form = {"unit": raw_unit, "from": request.query.get("from", date(today.year, 1, 1).isoformat()),
            "to": request.query.get("to", today.isoformat())}
    rule = request.app[keys.CREDIT_RULE]
    context: dict[str, Any] = {"form": form, "report": None, "rule_lines": export.rule_lines(rule, translator(request))}
    try:
        if raw_unit:
            found = digits(raw_unit)
            if found is None:
                raise ValidationFailed.one("unit", "unknown_unit", "no such unit")
            unit_id = found
        else:
            unit_id = await _default_unit(request, principal) or 0
        async with request.app[keys.DATABASE].session() as db:
            if await db.get(Unit, unit_id) is None:
                raise ValidationFailed.one("unit", "unknown_unit", "no such unit")
        context["report"] = await _unit_report(request, unit_id)
        form["unit"] = str(unit_id)
    except ValidationFailed as exc:
        context["errors"] = exc.by_field()
        context["units"] = await _unit_choices(request, principal)
        return render(request, "attendance_units.html", context, status=422)
    context["units"] = await _unit_choices(request, principal)
    return render(request, "attendance_units.html", context)


async def _unit_choices(request: web.Request, principal: Principal) -> list[Unit]:
    async with request.app[keys.DATABASE].session() as db:
        units = await list_units(db)
    if principal.is_admin:
        return units
    allowed = set(await _operator_units(request, principal))
    return [u for u in units if u.id in allowed]
