"""Check-in over HTTP: the hall screen's code and QR, the member's phone page, the operator's list, the API.

A scan of the QR link (``GET /checkin?t=...``) is validated when it is made
and remembered in a short-lived signed cookie, so a member who must sign in
first is still checked in after the code on the screen has rotated. GET
never checks anyone in: the phone page posts (with its CSRF token) by itself.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import segno
from aiohttp import web

from server import keys
from server.attendance.checkin import TICKET_SECONDS, CheckinError, Hall, Scan, looks_like_code, normalise_code
from server.auth.principal import Principal
from server.auth.roles import Role
from server.collation import sorted_by_name, vietnamese_key
from server.errors import AppError, Conflict, Forbidden, TooManyRequests, ValidationFailed
from server.live.lifecycle import SessionStatus
from server.schemas import CHECKIN, CHECKIN_REMOVAL, MANUAL_CHECKIN
from server.storage import checkins as store
from server.storage import sessions as session_store
from server.storage.attendance import refresh_records
from server.storage.models import BridgePoint, Checkin, CheckinSource, Session, User
from server.views.api import read_json
from server.views.auth import current, is_secure, require
from server.views.forms import path_id
from server.validation import digits
from server.views.render import render

TICKET_COOKIE = "bc_checkin"
# Counted against the per-user limit: a guess that found nothing.
_GUESSES = {"wrong_code", "expired_code"}
_STATUS = {"wrong_code": 400, "expired_code": 400, "ambiguous_code": 409}


def _iso(value: datetime | float | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, float | int):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).isoformat()


def checkin_json(checkin: Checkin, session: Session, point: BridgePoint,
                 outcome: store.CheckinOutcome | None = None) -> dict[str, Any]:
    return {
        "id": checkin.id,
        "session": {"id": session.id, "title": session.title, "status": session.status.value},
        "bridge_point": {"id": point.id, "name": point.name},
        "user_id": checkin.user_id,
        "checked_in_at": _iso(checkin.checked_in_at),
        "checked_out_at": _iso(checkin.checked_out_at),
        "source": checkin.source.value,
        "created": outcome.created if outcome else False,
        "closed_checkin_id": outcome.closed.id if outcome and outcome.closed else None,
    }


def _error(exc: CheckinError) -> AppError:
    error = AppError(exc.message, code=exc.code)
    error.status = _STATUS.get(exc.code, 400)
    return error


async def _after_change(request: web.Request, session_id: int) -> None:
    """An ended session's records follow any change of its check-ins (no-op otherwise)."""
    await refresh_records(request.app[keys.DATABASE], session_id, request.app[keys.CREDIT_RULE])


# Checking in (shared by the API and the phone page) ----------------------------------------------

def _require_member(principal: Principal) -> None:
    if principal.role is not Role.MEMBER:
        raise Forbidden("only members check in; operators mark members present on the check-in list",
                        code="not_member")


async def perform_checkin(request: web.Request, principal: Principal, *, value: str | None = None,
                          scan: Scan | None = None) -> store.CheckinOutcome:
    """Check the caller in by a typed code, a QR token (``value``) or a remembered scan."""
    _require_member(principal)
    limiter = request.app[keys.CHECKIN_LIMITER]
    key = f"user:{principal.user_id}"
    wait = limiter.retry_after(key)
    if wait:
        raise TooManyRequests("too many wrong check-in codes: wait and try again", retry_after=wait,
                              code="rate_limited")
    # Counted as a guess before anything is awaited, so that concurrent requests cannot all pass the
    # check above; taken back below when it was no guess.
    limiter.hit(key)
    codes = request.app[keys.CHECKIN_CODES]
    try:
        if scan is not None:
            hall, source = scan.hall, CheckinSource.QR
        elif value is not None and looks_like_code(value):
            async with request.app[keys.DATABASE].session() as db:
                halls, home = await store.typed_code_halls(db, principal)
            hall, source = codes.match_code(normalise_code(value), halls, home), CheckinSource.CODE
        else:
            hall, source = codes.read_token(value or "").hall, CheckinSource.QR
    except CheckinError as exc:
        if exc.code not in _GUESSES:
            limiter.unhit(key)
        raise _error(exc) from None
    except BaseException:
        limiter.unhit(key)
        raise
    limiter.unhit(key)
    async with request.app[keys.DATABASE].session() as db:
        return await store.check_in(db, principal, hall, source)


# The hall's screen: code, QR, count ------------------------------------------------------------------

async def _hall_of_operator(request: web.Request) -> tuple[Principal, Session, int]:
    principal = current(request)
    assert principal is not None
    async with request.app[keys.DATABASE].session() as db:
        session = await session_store.visible_session(db, principal, path_id(request))
    if principal.role is not Role.OPERATOR or principal.bridge_point_id not in session.invited_point_ids:
        raise Forbidden("only the operator of an invited hall shows its check-in code", code="not_invited")
    if session.status not in store.OPEN:
        raise Conflict("check-in is closed: the session has ended or was cancelled", code="session_not_open")
    return principal, session, principal.bridge_point_id


def checkin_url(request: web.Request, token: str) -> str:
    base = request.app[keys.SETTINGS].server.public_url.rstrip("/") or f"{request.scheme}://{request.host}"
    return f"{base}/checkin?t={token}"


async def code_state(request: web.Request, session_id: int, point_id: int) -> dict[str, Any]:
    """What the hall's screen shows now: the code, the QR link and image, when they rotate, the count."""
    codes = request.app[keys.CHECKIN_CODES]
    issued = codes.issue(Hall(session_id, point_id))
    async with request.app[keys.DATABASE].session() as db:
        count = (await store.present_counts(db, session_id)).get(point_id, 0)
    return {
        "code": issued.code, "url": checkin_url(request, issued.token),
        "expires_at": _iso(issued.expires_at), "rotates_at": _iso(issued.rotates_at),
        "seconds_left": round(issued.rotates_at - codes.clock(), 3), "window_seconds": codes.window_seconds,
        "session_id": session_id, "bridge_point_id": point_id, "checked_in": count,
        "qr_svg": f"/sessions/{session_id}/checkin-qr.svg?window={issued.window}",
    }


@require(Role.OPERATOR)
async def checkin_code(request: web.Request) -> web.StreamResponse:
    _, session, point_id = await _hall_of_operator(request)
    return web.json_response(await code_state(request, session.id, point_id), headers={"Cache-Control": "no-store"})


def qr_svg(url: str) -> bytes:
    # Error correction M survives a glare spot on the screen; the quiet zone is part of the image.
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", xmldecl=False, svgns=True, scale=1, border=2,
                                    dark="#0b1f3a", light="#ffffff", omitsize=True)
    return out.getvalue()


@require(Role.OPERATOR)
async def checkin_qr(request: web.Request) -> web.StreamResponse:
    """The QR code of the current window (or of ``?window=`` if it is still accepted)."""
    _, session, point_id = await _hall_of_operator(request)
    codes = request.app[keys.CHECKIN_CODES]
    raw = request.query.get("window", "")
    asked = digits(raw, maximum=10**15)
    window = asked if asked is not None and asked in codes.accepted_windows() else codes.window()
    svg = qr_svg(checkin_url(request, codes.token(Hall(session.id, point_id), window)))
    return web.Response(body=svg, content_type="image/svg+xml", headers={"Cache-Control": "no-store"})


# The API -----------------------------------------------------------------------------------------------

@require()
async def create_checkin(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    _require_member(principal)  # before the body: an operator is told why, whatever they sent
    values = await read_json(request, CHECKIN)
    outcome = await perform_checkin(request, principal, value=values["code"])
    return await _checkin_response(request, outcome, status=201 if outcome.created else 200)


async def _checkin_response(request: web.Request, outcome: store.CheckinOutcome, status: int = 200) -> web.Response:
    async with request.app[keys.DATABASE].session() as db:
        session = await session_store.get_session(db, outcome.checkin.session_id)
        point = await db.get(BridgePoint, outcome.checkin.bridge_point_id)
    assert point is not None
    return web.json_response(checkin_json(outcome.checkin, session, point, outcome), status=status)


async def _check_out(request: web.Request) -> Checkin:
    principal = current(request)
    assert principal is not None
    async with request.app[keys.DATABASE].session() as db:
        checkin = await store.check_out(db, principal, path_id(request))
    await _after_change(request, checkin.session_id)
    return checkin


@require(Role.MEMBER)
async def checkout(request: web.Request) -> web.StreamResponse:
    checkin = await _check_out(request)
    return await _checkin_response(request, store.CheckinOutcome(checkin, created=False))


def _entry_json(entry: store.Entry) -> dict[str, Any]:
    return {"id": entry.id, "user_id": entry.user_id, "username": entry.username, "full_name": entry.full_name,
            "bridge_point_id": entry.bridge_point_id, "bridge_point": entry.bridge_point,
            "checked_in_at": _iso(entry.checked_in_at), "checked_out_at": _iso(entry.checked_out_at),
            "source": entry.source, "recorded_by": entry.recorded_by}


def _point_arg(request: web.Request) -> int | None:
    raw = request.query.get("point_id", "")
    if not raw:
        return None
    value = digits(raw)
    if value is None:
        raise ValidationFailed.one("point_id", "not_integer", "point_id must be a bridge point id")
    return value


@dataclass
class _Listing:
    """What the operator's list shows, for the page and the API alike."""

    principal: Principal
    session: Session
    point_id: int | None  # None: every point
    entries: list[store.Entry]
    counts: dict[int, int]
    points: dict[int, BridgePoint]
    expected: list[User]


async def _listing(request: web.Request, *, with_expected: bool = False) -> _Listing:
    """Operator: their own point; speaker and admin: every point, or ``?point_id=``."""
    principal = current(request)
    assert principal is not None
    wanted = _point_arg(request)
    async with request.app[keys.DATABASE].session() as db:
        session = await store.staff_session(db, principal, path_id(request))
        point_id = wanted if principal.role is Role.SPEAKER else store.own_point(principal, session, wanted)
        entries = await store.list_entries(db, session.id, point_id)
        counts = await store.present_counts(db, session.id)
        points = await session_store.points_by_id(db, session.invited_point_ids)
        expected = await store.expected_members(db, session, point_id) if with_expected and point_id else []
    return _Listing(principal, session, point_id, entries, counts, points, expected)


@require(Role.OPERATOR, Role.SPEAKER, Role.ADMIN)
async def list_checkins(request: web.Request) -> web.StreamResponse:
    """Operator: their own point; speaker and admin: every point, with counts (``?point_id=`` narrows)."""
    listing = await _listing(request)
    shown = [p for p in listing.points.values() if listing.point_id is None or p.id == listing.point_id]
    return web.json_response({
        "session_id": listing.session.id,
        "points": [{"bridge_point_id": p.id, "name": p.name, "checked_in": listing.counts.get(p.id, 0)}
                   for p in sorted(shown, key=lambda p: p.id)],
        "checkins": [_entry_json(e) for e in listing.entries],
    }, headers={"Cache-Control": "no-store"})


async def _optional_json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body and not request.content_length:
        return CHECKIN_REMOVAL.parse({})
    return await read_json(request, CHECKIN_REMOVAL)


@require(Role.OPERATOR, Role.ADMIN)
async def remove_checkin(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    values = await _optional_json(request)
    async with request.app[keys.DATABASE].session() as db:
        checkin = await store.remove(db, principal, path_id(request), values["reason"])
    await _after_change(request, checkin.session_id)
    return web.Response(status=204)


@require(Role.OPERATOR, Role.ADMIN)
async def manual_checkin(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    values = await read_json(request, MANUAL_CHECKIN)
    if ("username" in values) == ("user_id" in values):
        code = "one_of" if "username" in values else "required"
        raise ValidationFailed.one("username", code, "name the member by username or user_id (one of them)")
    session_id = path_id(request)
    async with request.app[keys.DATABASE].session() as db:
        member_id = await store.member_by(db, values.get("username"), values.get("user_id"))
        outcome = await store.mark_present(db, principal, session_id, member_id,
                                           point_id=values.get("bridge_point_id"), from_start=values["from_start"],
                                           reason=values["reason"])
    await _after_change(request, session_id)
    return await _checkin_response(request, outcome, status=201 if outcome.created else 200)


# The member's phone page -------------------------------------------------------------------------------

def _forget_scan(response: web.StreamResponse) -> None:
    response.del_cookie(TICKET_COOKIE, path="/checkin")


async def _phone_page(request: web.Request, principal: Principal | None, *, refusal: str | None = None,
                      status: int = 200, code: str = "", pending: Scan | None = None) -> web.Response:
    mine: list[tuple[Checkin, Session, BridgePoint]] = []
    pending_info: dict[str, Any] | None = None
    async with request.app[keys.DATABASE].session() as db:
        if principal is not None and principal.role is Role.MEMBER:
            mine = await store.current_checkins(db, principal.user_id)
        if pending is not None:
            session = await db.get(Session, pending.hall.session_id)
            point = await db.get(BridgePoint, pending.hall.point_id)
            pending_info = {"session": session.title if session else "", "point": point.name if point else ""}
    return render(request, "checkin.html", {
        "mine": mine, "refusal": refusal, "code": code, "pending": pending_info,
        "done": request.query.get("done", "") if refusal is None else "",
        "is_member": principal is not None and principal.role is Role.MEMBER,
    }, status=status)


async def checkin_page(request: web.Request) -> web.StreamResponse:
    """``GET /checkin``: the QR link (``?t=``), then the member's check-in and the code form."""
    principal = current(request)
    token = request.query.get("t")
    if token is not None:
        codes = request.app[keys.CHECKIN_CODES]
        try:
            scan = codes.read_token(token)
        except CheckinError as exc:
            return await _phone_page(request, principal, refusal=exc.code, status=_STATUS.get(exc.code, 400))
        # Remember the scan (not the rotating token) and take it out of the address bar.
        redirect = web.HTTPSeeOther("/checkin" if principal is not None else "/login?next=/checkin")
        redirect.set_cookie(TICKET_COOKIE, codes.ticket(scan), max_age=TICKET_SECONDS, httponly=True,
                            samesite="Lax", secure=is_secure(request), path="/checkin")
        raise redirect
    if principal is None:
        raise web.HTTPSeeOther("/login?next=/checkin")
    if principal.role is not Role.MEMBER:
        return await _phone_page(request, principal, refusal="not_member", status=403)
    pending = None
    ticket = request.cookies.get(TICKET_COOKIE)
    if ticket:
        try:
            pending = request.app[keys.CHECKIN_CODES].read_ticket(ticket)
        except CheckinError as exc:
            response = await _phone_page(request, principal, refusal=exc.code, status=_STATUS.get(exc.code, 400))
            _forget_scan(response)
            return response
    return await _phone_page(request, principal, pending=pending)


@require()
async def checkin_submit(request: web.Request) -> web.StreamResponse:
    """``POST /checkin``: the remembered scan (``scan=1``) or a typed code."""
    principal = current(request)
    assert principal is not None
    posted = await request.post()
    use_scan = posted.get("scan") == "1"
    typed = str(posted.get("code", ""))[:1000]
    try:
        if use_scan:
            ticket = request.cookies.get(TICKET_COOKIE, "")
            if not ticket:
                raise CheckinError("expired_code", "the scan was not kept: scan the QR code again")
            outcome = await perform_checkin(request, principal, scan=request.app[keys.CHECKIN_CODES].read_ticket(ticket))
        else:
            CHECKIN.parse({"code": typed}, forms=True)
            outcome = await perform_checkin(request, principal, value=typed)
    except CheckinError as exc:
        response = await _phone_page(request, principal, refusal=exc.code, status=_STATUS.get(exc.code, 400))
        _forget_scan(response)
        return response
    except ValidationFailed:
        return await _phone_page(request, principal, refusal="wrong_code", status=422, code=typed)
    except AppError as exc:
        response = await _phone_page(request, principal, refusal=exc.code, status=exc.status, code=typed)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after)
        elif use_scan:
            _forget_scan(response)
        return response
    redirect = web.HTTPSeeOther("/checkin?done=" + ("in" if outcome.created else "again"))
    _forget_scan(redirect)
    raise redirect


@require(Role.MEMBER)
async def checkout_submit(request: web.Request) -> web.StreamResponse:
    await _check_out(request)
    raise web.HTTPSeeOther("/checkin?done=out")


# The operator's list ---------------------------------------------------------------------------------------

@require(Role.OPERATOR, Role.SPEAKER, Role.ADMIN)
async def checkins_page(request: web.Request) -> web.StreamResponse:
    listing = await _listing(request, with_expected=True)
    principal, session, point_id = listing.principal, listing.session, listing.point_id
    can_change = (principal.role is not Role.SPEAKER and point_id is not None
                  and session.status is not SessionStatus.CANCELLED)
    return render(request, "checkins.html", {
        "session": session, "point": listing.points.get(point_id) if point_id else None,
        "points": sorted_by_name(listing.points.values()), "entries": listing.entries, "counts": listing.counts,
        "expected": sorted(listing.expected, key=lambda u: (vietnamese_key(u.full_name), u.username)),
        "present": {e.user_id: e for e in listing.entries if e.checked_out_at is None},
        "can_change": can_change, "is_admin": principal.is_admin, "done": request.query.get("done", ""),
    })


def _back(session_id: int, point_id: int | None, principal: Principal, done: str) -> web.HTTPSeeOther:
    query = f"point_id={point_id}&" if principal.is_admin and point_id else ""
    return web.HTTPSeeOther(f"/sessions/{session_id}/checkins?{query}done={done}")


@require(Role.OPERATOR, Role.ADMIN)
async def remove_submit(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    posted = await request.post()
    values = CHECKIN_REMOVAL.parse({"reason": str(posted.get("reason", ""))}, forms=True)
    session_id = path_id(request)
    async with request.app[keys.DATABASE].session() as db:
        checkin = await db.get(Checkin, path_id(request, "checkin"))
        if checkin is None or checkin.session_id != session_id:
            raise web.HTTPNotFound()
        checkin = await store.remove(db, principal, checkin.id, values["reason"])
    await _after_change(request, session_id)
    raise _back(session_id, checkin.bridge_point_id, principal, "removed")


@require(Role.OPERATOR, Role.ADMIN)
async def manual_submit(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    posted = await request.post()
    raw = {name: str(posted[name]) for name in ("user_id", "from_start", "bridge_point_id", "reason")
           if name in posted}
    values = MANUAL_CHECKIN.parse(raw, forms=True)
    if values.get("user_id") is None:
        raise ValidationFailed.one("user_id", "required", "choose a member")
    session_id = path_id(request)
    async with request.app[keys.DATABASE].session() as db:
        outcome = await store.mark_present(db, principal, session_id, values["user_id"],
                                           point_id=values.get("bridge_point_id"), from_start=values["from_start"],
                                           reason=values.get("reason", ""))
    await _after_change(request, session_id)
    raise _back(session_id, outcome.checkin.bridge_point_id, principal, "marked" if outcome.created else "already")
