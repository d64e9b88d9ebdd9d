"""Who may call what (issue 12, "Access"): every route against every role, every live message against every seat.

``ROUTES`` below is the expected outcome of every route the application
serves, for anonymous callers, a member and the operator of hall A (the
session's province), a member and the operator of hall B (another
province), the session's speaker, another speaker and an administrator.
The table is compared with ``app.router``: a route added without an entry
here fails ``test_every_served_route_has_a_row``. tests/views/test_roles.py
checks the decorators (admin-only routes refuse everyone else); this checks
what each role actually gets, data included: a session shown only in hall
A is *hidden* from province B and from another speaker.

Outcomes: a status, ``LOGIN`` (a page's redirect to the sign-in form),
``See(prefix)`` (another redirect), or a set of acceptable statuses. A
session, recording or check-in the caller may not see is ``HIDDEN``: 404,
the same answer as for one that does not exist (server/storage/sessions.py:
nobody learns which sessions exist by asking for ids one by one).

The live protocol has its own tables (``JOINS``, ``MESSAGES``): every client
message of docs/protocol.md sent by the host, an administrator, hall A,
hall B (another province's hall in the same session), members of both
provinces, and an administrator who joined as a member. What a seat may not
do is refused with ``forbidden`` and changes nothing; hosts' information
(roll call, roster, questions) never reaches anyone else.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from openpyxl import load_workbook

from server.live.lifecycle import SessionStatus
from server.signaling.connections import CLOSE_NORMAL, CLOSE_REMOVED
from server.signaling.messages import CLIENT_MESSAGES
from server.storage.models import Checkin, Session
from tests.security.conftest import ROLES, SIGNED_IN, World
from tests.signaling.helpers import OPENED, LiveClient

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass(frozen=True)
class See:
    """A redirect (303) whose Location starts with ``prefix``."""

    prefix: str


LOGIN = See("/login?next=")
HIDDEN = 404
Outcome = int | See | frozenset[int]

VISIBLE_TO = ("member_a", "op_a", "speaker", "admin")  # who may see a session shown in hall A
HIDDEN_FROM = ("member_b", "op_b", "speaker_2")


def outcomes(anon: Outcome, default: Outcome | None = None, **roles: Outcome) -> dict[str, Outcome]:
    table = {"anon": anon, **{role: roles.get(role, default) for role in SIGNED_IN}}
    missing = [role for role, outcome in table.items() if outcome is None]
    assert not missing, missing
    return table  # type: ignore[return-value]


def public(outcome: Outcome) -> dict[str, Outcome]:
    return outcomes(outcome, outcome)


def signed_in(outcome: Outcome, anon: Outcome) -> dict[str, Outcome]:
    return outcomes(anon, outcome)


def admin_only(outcome: Outcome, anon: Outcome) -> dict[str, Outcome]:
    return outcomes(anon, 403, admin=outcome)


def visible(outcome: Outcome, anon: Outcome) -> dict[str, Outcome]:
    return outcomes(anon, **{r: outcome for r in VISIBLE_TO}, **{r: HIDDEN for r in HIDDEN_FROM})


# What a case sends -----------------------------------------------------------------------------------

@dataclass
class Call:
    path: str
    json: Any = None
    form: dict[str, Any] | None = None
    data: Any = None
    content_type: str | None = None
    websocket: bool = False


Build = Callable[[World, str], Awaitable[Call]]


def at(template: str, **extra: Any) -> Build:
    """A fixed path: ``{S}``, ``{AB}``, ``{E}`` (sessions), ``{R}`` (a recording), ``{unit_a}``, ``{point_a}``,
    ``{member_a}`` are filled from the world."""
    async def build(world: World, role: str) -> Call:
        return Call(fill(world, template), **extra)

    build.template = template  # type: ignore[attr-defined]
    build.extra = extra  # type: ignore[attr-defined]
    return build


def fill(world: World, template: str) -> str:
    return template.format(**world.named, unit_a=world.seed.province_a.id, point_a=world.seed.point_a.id,
                           member_a=world.seed.member.id, resource=uuid.uuid4().hex)


def fresh(make: Callable[[World], Awaitable[Any]], template: str, **extra: Any) -> Build:
    """A target of its own for every case (a session to cancel, a unit to delete ...): ``{new}`` in the path;
    ``make`` may return a dict of several values."""
    async def build(world: World, role: str) -> Call:
        made = await make(world)
        values = made if isinstance(made, dict) else {"new": made}
        return Call(template.format(**values), **{k: v(world) if callable(v) else v for k, v in extra.items()})

    return build


async def _session(world: World) -> int:
    return await world.new_session()


async def _live_session(world: World) -> int:
    return await world.new_session(status=SessionStatus.LIVE)


async def _session_and_checkin(world: World) -> dict[str, int]:
    session_id = await world.new_session()
    return {"new": session_id, "checkin": await world.new_checkin(session_id)}


async def _checkin(world: World) -> int:
    return await world.new_checkin(await world.new_session())


async def _unit(world: World) -> int:
    return await world.new_unit()


async def _point(world: World) -> int:
    return await world.new_point()


async def _user(world: World) -> int:
    return (await world.new_user()).id


async def _recording(world: World) -> int:
    return await world.new_recording(extras=False)


def _member_a(world: World) -> dict[str, int]:
    return {"user_id": world.seed.member.id}


BAD_SDP = "v=0\r\n"
_OFFERS: dict[str, str] = {}


async def offer_sdp(direction: str) -> str:
    """A real offer (one video, one audio section) from aiortc: the server answers it, ICE never completes."""
    if direction not in _OFFERS:
        from aiortc import RTCPeerConnection

        pc = RTCPeerConnection()
        try:
            pc.addTransceiver("video", direction=direction)
            pc.addTransceiver("audio", direction=direction)
            await pc.setLocalDescription(await pc.createOffer())
            _OFFERS[direction] = pc.localDescription.sdp
        finally:
            await pc.close()
    return _OFFERS[direction]


def resource(kind: str, owner: str) -> Build:
    """A WHIP (the speaker's feed) or WHEP (a member's player) resource of its own, to DELETE."""
    async def build(world: World, role: str) -> Call:
        session_id = await world.new_session()
        sdp = await offer_sdp("sendonly" if kind == "whip" else "recvonly")
        headers = world.bearer(world.user(owner))
        opened = await world.call("POST", f"/{kind}/sessions/{session_id}", data=sdp, content_type="application/sdp",
                                  headers=headers)
        assert opened.status == 201, opened.text
        world.leftovers.append((opened.location, headers))
        return Call(opened.location)

    return build


# The table ---------------------------------------------------------------------------------------------

@dataclass
class Row:
    expect: dict[str, Outcome]
    build: Build
    note: str = ""


NOT_MEMBER = outcomes(LOGIN, 403, member_a=400, member_b=400)  # the phone page: members only

ROUTES: dict[tuple[str, str], Row] = {
    # Public pages.
    ("GET", "/healthz"): Row(public(200), at("/healthz")),
    ("GET", "/readyz"): Row(public(200), at("/readyz")),
    # The loopback may scrape without a token (the test client is on it); elsewhere see tests/views/test_metrics.py.
    ("GET", "/metrics"): Row(public(200), at("/metrics")),
    ("GET", "/login"): Row(outcomes(200, See("/")), at("/login")),
    ("POST", "/login"): Row(public(401), at("/login", form={"username": "nobody-at-all", "password": "wrong one",
                                                             "next": "/"})),
    ("POST", "/logout"): Row(public(See("/login")), at("/logout")),
    ("POST", "/lang"): Row(public(See("/")), at("/lang", form={"locale": "vi", "next": "/"})),
    # The account.
    ("GET", "/account/password"): Row(signed_in(200, LOGIN), at("/account/password")),
    ("POST", "/account/password"): Row(signed_in(422, LOGIN), at(
        "/account/password", form={"current_password": "not the password", "new_password": "a new password 1"}),
        "the current password is wrong: the form again, nothing changed"),
    # Sessions.
    ("GET", "/"): Row(signed_in(200, LOGIN), at("/")),
    ("GET", "/sessions"): Row(signed_in(200, LOGIN), at("/sessions")),
    ("GET", "/sessions/new"): Row(admin_only(200, LOGIN), at("/sessions/new")),
    ("POST", "/sessions/new"): Row(admin_only(422, LOGIN), at("/sessions/new", form={})),
    ("GET", "/sessions/{id}"): Row(visible(200, LOGIN), at("/sessions/{S}")),
    ("GET", "/sessions/{id}/edit"): Row(admin_only(200, LOGIN), at("/sessions/{S}/edit")),
    ("POST", "/sessions/{id}/edit"): Row(admin_only(422, LOGIN), at("/sessions/{S}/edit", form={})),
    ("POST", "/sessions/{id}/cancel"): Row(admin_only(See("/sessions/"), LOGIN), fresh(_session, "/sessions/{new}/cancel")),
    ("GET", "/sessions/{id}/live"): Row(visible(200, LOGIN), at("/sessions/{S}/live")),
    # The roll-call board: the session's speaker and admins (a speaker of another session cannot see it).
    ("GET", "/sessions/{id}/board"): Row(outcomes(LOGIN, 403, speaker=200, speaker_2=HIDDEN, admin=200),
                                         at("/sessions/{S}/board")),
    ("GET", "/ws/sessions/{id}"): Row(visible(101, 401), at("/ws/sessions/{S}", websocket=True)),
    # Check-in: the hall's screen, the operator's list, the phone page.
    ("GET", "/sessions/{id}/checkin-qr.svg"): Row(outcomes(LOGIN, 403, op_a=200, op_b=HIDDEN),
                                                  at("/sessions/{S}/checkin-qr.svg")),
    ("GET", "/sessions/{id}/checkins"): Row(outcomes(LOGIN, 403, op_a=200, op_b=HIDDEN, speaker=200,
                                                     speaker_2=HIDDEN, admin=200), at("/sessions/{S}/checkins")),
    ("POST", "/sessions/{id}/checkins/manual"): Row(
        outcomes(LOGIN, 403, op_a=See("/sessions/"), op_b=HIDDEN, admin=See("/sessions/")),
        fresh(_session, "/sessions/{new}/checkins/manual", form=lambda w: {"user_id": str(w.seed.member.id)})),
    ("POST", "/sessions/{id}/checkins/{checkin}/remove"): Row(
        outcomes(LOGIN, 403, op_a=See("/sessions/"), op_b=HIDDEN, admin=See("/sessions/")),
        fresh(_session_and_checkin, "/sessions/{new}/checkins/{checkin}/remove", form={"reason": "wrong"})),
    ("GET", "/checkin"): Row(outcomes(LOGIN, 403, member_a=200, member_b=200), at("/checkin")),
    ("POST", "/checkin"): Row(NOT_MEMBER, at("/checkin", form={"code": "not-a-code"})),
    ("POST", "/checkin/{id}/checkout"): Row(outcomes(LOGIN, 403, member_a=See("/checkin"), member_b=HIDDEN),
                                            fresh(_checkin, "/checkin/{new}/checkout")),
    # Reports.
    ("GET", "/sessions/{id}/attendance"): Row(outcomes(LOGIN, 403, op_a=200, op_b=HIDDEN, speaker=200,
                                                       speaker_2=HIDDEN, admin=200), at("/sessions/{S}/attendance")),
    ("POST", "/sessions/{id}/attendance/corrections"): Row(admin_only(422, LOGIN),
                                                           at("/sessions/{S}/attendance/corrections", form={})),
    ("GET", "/users/{id}/attendance"): Row(outcomes(LOGIN, 403, member_a=200, op_a=200, admin=200),
                                           at("/users/{member_a}/attendance")),
    ("GET", "/reports/units"): Row(outcomes(LOGIN, 403, op_a=200, admin=200), at("/reports/units?unit={unit_a}")),
    # Recordings.
    ("GET", "/recordings"): Row(signed_in(200, LOGIN), at("/recordings")),
    ("GET", "/recordings/{id}"): Row(visible(200, LOGIN), at("/recordings/{R}")),
    ("POST", "/recordings/{id}/delete"): Row(admin_only(See("/recordings/"), LOGIN),
                                             fresh(_recording, "/recordings/{new}/delete")),
    ("GET", "/recordings/{id}/file.webm"): Row(visible(200, LOGIN), at("/recordings/{R}/file.webm")),
    ("GET", "/recordings/{id}/file.mkv"): Row(visible(200, LOGIN), at("/recordings/{R}/file.mkv")),
    ("GET", "/recordings/{id}/file.mp4"): Row(visible(200, LOGIN), at("/recordings/{R}/file.mp4")),
    ("GET", "/recordings/{id}/poster.jpg"): Row(visible(200, LOGIN), at("/recordings/{R}/poster.jpg")),
    # Administration pages.
    ("GET", "/units"): Row(admin_only(200, LOGIN), at("/units")),
    ("POST", "/units"): Row(admin_only(422, LOGIN), at("/units", form={})),
    ("GET", "/units/{id}/edit"): Row(admin_only(200, LOGIN), at("/units/{unit_a}/edit")),
    ("POST", "/units/{id}/edit"): Row(admin_only(422, LOGIN), at("/units/{unit_a}/edit", form={})),
    ("POST", "/units/{id}/delete"): Row(admin_only(See("/units"), LOGIN), fresh(_unit, "/units/{new}/delete")),
    ("GET", "/bridge-points"): Row(admin_only(200, LOGIN), at("/bridge-points")),
    ("POST", "/bridge-points"): Row(admin_only(422, LOGIN), at("/bridge-points", form={})),
    ("GET", "/bridge-points/{id}/edit"): Row(admin_only(200, LOGIN), at("/bridge-points/{point_a}/edit")),
    ("POST", "/bridge-points/{id}/edit"): Row(admin_only(422, LOGIN), at("/bridge-points/{point_a}/edit", form={})),
    ("POST", "/bridge-points/{id}/delete"): Row(admin_only(See("/bridge-points"), LOGIN),
                                                fresh(_point, "/bridge-points/{new}/delete")),
    ("GET", "/users"): Row(admin_only(200, LOGIN), at("/users")),
    ("POST", "/users"): Row(admin_only(422, LOGIN), at("/users", form={})),
    ("GET", "/users/{id}/edit"): Row(admin_only(200, LOGIN), at("/users/{member_a}/edit")),
    ("POST", "/users/{id}/edit"): Row(admin_only(422, LOGIN), at("/users/{member_a}/edit", form={})),
    ("GET", "/users/import"): Row(admin_only(200, LOGIN), at("/users/import")),
    ("POST", "/users/import"): Row(admin_only(422, LOGIN), at("/users/import", form={})),
    # The JSON API.
    ("POST", "/api/v1/auth/token"): Row(public(401), at("/api/v1/auth/token",
                                                        json={"username": "nobody-at-all", "password": "wrong one"})),
    ("POST", "/api/v1/auth/logout"): Row(signed_in(204, 401), at("/api/v1/auth/logout")),
    ("GET", "/api/v1/me"): Row(signed_in(200, 401), at("/api/v1/me")),
    ("GET", "/api/v1/sessions"): Row(signed_in(200, 401), at("/api/v1/sessions")),
    ("POST", "/api/v1/sessions"): Row(admin_only(422, 401), at("/api/v1/sessions", json={})),
    ("GET", "/api/v1/sessions/{id}"): Row(visible(200, 401), at("/api/v1/sessions/{S}")),
    ("PATCH", "/api/v1/sessions/{id}"): Row(admin_only(200, 401), fresh(_session, "/api/v1/sessions/{new}", json={})),
    ("POST", "/api/v1/sessions/{id}/cancel"): Row(admin_only(200, 401), fresh(_session, "/api/v1/sessions/{new}/cancel")),
    ("POST", "/api/v1/sessions/{id}/start"): Row(outcomes(401, 403, speaker=200, speaker_2=HIDDEN, admin=200),
                                                 fresh(_session, "/api/v1/sessions/{new}/start")),
    ("POST", "/api/v1/sessions/{id}/end"): Row(outcomes(401, 403, speaker=200, speaker_2=HIDDEN, admin=200),
                                               fresh(_live_session, "/api/v1/sessions/{new}/end")),
    # A hall's connection test: its operator (a malformed offer: 400 past every check of who may); an
    # admin is the session's host there, not a hall (403).
    ("POST", "/api/v1/sessions/{id}/precheck"): Row(outcomes(401, 403, op_a=400, op_b=HIDDEN),
                                                   at("/api/v1/sessions/{S}/precheck", data=BAD_SDP,
                                                      content_type="application/sdp")),
    ("DELETE", "/api/v1/sessions/{id}/precheck/{resource}"): Row(
        outcomes(401, 403, op_a=404, op_b=404, admin=404), at("/api/v1/sessions/{S}/precheck/" + "0" * 32)),
    ("GET", "/api/v1/sessions/{id}/roll-call"): Row(outcomes(401, 403, speaker=200, speaker_2=HIDDEN, admin=200),
                                                    at("/api/v1/sessions/{S}/roll-call")),
    ("GET", "/api/v1/sessions/{id}/checkin-code"): Row(outcomes(401, 403, op_a=200, op_b=HIDDEN),
                                                       at("/api/v1/sessions/{S}/checkin-code")),
    ("GET", "/api/v1/sessions/{id}/checkins"): Row(outcomes(401, 403, op_a=200, op_b=HIDDEN, speaker=200,
                                                            speaker_2=HIDDEN, admin=200),
                                                   at("/api/v1/sessions/{S}/checkins")),
    ("POST", "/api/v1/sessions/{id}/checkins/manual"): Row(
        outcomes(401, 403, op_a=201, op_b=HIDDEN, admin=201),
        fresh(_session, "/api/v1/sessions/{new}/checkins/manual", json=_member_a)),
    ("POST", "/api/v1/checkins"): Row(outcomes(401, 403, member_a=400, member_b=400),
                                      at("/api/v1/checkins", json={"code": "not-a-code"})),
    ("POST", "/api/v1/checkins/{id}/checkout"): Row(outcomes(401, 403, member_a=200, member_b=HIDDEN),
                                                    fresh(_checkin, "/api/v1/checkins/{new}/checkout")),
    ("DELETE", "/api/v1/checkins/{id}"): Row(outcomes(401, 403, op_a=204, op_b=HIDDEN, admin=204),
                                             fresh(_checkin, "/api/v1/checkins/{new}")),
    ("GET", "/api/v1/sessions/{id}/attendance"): Row(outcomes(401, 403, op_a=200, op_b=HIDDEN, speaker=200,
                                                              speaker_2=HIDDEN, admin=200),
                                                     at("/api/v1/sessions/{S}/attendance")),
    ("POST", "/api/v1/sessions/{id}/attendance/corrections"): Row(
        admin_only(422, 401), at("/api/v1/sessions/{S}/attendance/corrections", json={})),
    ("GET", "/api/v1/sessions/{id}/recordings"): Row(visible(200, 401), at("/api/v1/sessions/{E}/recordings")),
    ("GET", "/api/v1/recordings/{id}"): Row(visible(200, 401), at("/api/v1/recordings/{R}")),
    ("POST", "/api/v1/recordings/{id}/progress"): Row(visible(200, 401), at("/api/v1/recordings/{R}/progress",
                                                                            json={"ranges": []})),
    ("DELETE", "/api/v1/recordings/{id}"): Row(admin_only(204, 401), fresh(_recording, "/api/v1/recordings/{new}")),
    ("GET", "/api/v1/units"): Row(signed_in(200, 401), at("/api/v1/units")),
    ("POST", "/api/v1/units"): Row(admin_only(422, 401), at("/api/v1/units", json={})),
    ("GET", "/api/v1/units/{id}"): Row(signed_in(200, 401), at("/api/v1/units/{unit_a}")),
    ("PATCH", "/api/v1/units/{id}"): Row(admin_only(200, 401), fresh(_unit, "/api/v1/units/{new}", json={})),
    ("DELETE", "/api/v1/units/{id}"): Row(admin_only(204, 401), fresh(_unit, "/api/v1/units/{new}")),
    ("GET", "/api/v1/units/{id}/attendance"): Row(outcomes(401, 403, op_a=200, admin=200),
                                                  at("/api/v1/units/{unit_a}/attendance")),
    ("GET", "/api/v1/bridge-points"): Row(signed_in(200, 401), at("/api/v1/bridge-points")),
    ("POST", "/api/v1/bridge-points"): Row(admin_only(422, 401), at("/api/v1/bridge-points", json={})),
    ("GET", "/api/v1/bridge-points/{id}"): Row(signed_in(200, 401), at("/api/v1/bridge-points/{point_a}")),
    ("PATCH", "/api/v1/bridge-points/{id}"): Row(admin_only(200, 401), fresh(_point, "/api/v1/bridge-points/{new}",
                                                                             json={})),
    ("DELETE", "/api/v1/bridge-points/{id}"): Row(admin_only(204, 401), fresh(_point, "/api/v1/bridge-points/{new}")),
    ("GET", "/api/v1/users"): Row(admin_only(200, 401), at("/api/v1/users")),
    ("POST", "/api/v1/users"): Row(admin_only(422, 401), at("/api/v1/users", json={})),
    ("GET", "/api/v1/users/{id}"): Row(admin_only(200, 401), at("/api/v1/users/{member_a}")),
    ("PATCH", "/api/v1/users/{id}"): Row(admin_only(200, 401), fresh(_user, "/api/v1/users/{new}", json={})),
    ("GET", "/api/v1/users/{id}/attendance"): Row(outcomes(401, 403, member_a=200, op_a=200, admin=200),
                                                  at("/api/v1/users/{member_a}/attendance")),
    ("POST", "/api/v1/users/import"): Row(admin_only(422, 401), at("/api/v1/users/import", data=b"",
                                                                   content_type="text/csv")),
    ("GET", "/api/v1/openapi.json"): Row(public(200), at("/api/v1/openapi.json")),
    ("HEAD", "/api/v1/openapi.json"): Row(public(200), at("/api/v1/openapi.json")),
    ("GET", "/static"): Row(public(200), at("/static/css/app.css")),
    ("HEAD", "/static"): Row(public(200), at("/static/css/app.css")),
    # WHIP and WHEP. A refused caller is told so before the offer is looked at; an allowed one with a
    # malformed offer gets 400 bad_sdp (past every check of who may).
    ("POST", "/whip/sessions/{id}"): Row(outcomes(401, 403, member_b=HIDDEN, op_b=HIDDEN, speaker=400,
                                                  speaker_2=HIDDEN, admin=400),
                                         at("/whip/sessions/{S}", data=BAD_SDP, content_type="application/sdp")),
    ("OPTIONS", "/whip/sessions/{id}"): Row(public(204), at("/whip/sessions/{S}")),
    ("DELETE", "/whip/sessions/{id}/{resource}"): Row(
        outcomes(401, 403, member_b=frozenset({403, 404}), op_b=frozenset({403, 404}),
                 speaker_2=frozenset({403, 404}), speaker=200, admin=200), resource("whip", "speaker"),
        "another user's resource: 403 (its id is 128 random bits, so 403 tells nothing a guesser could use)"),
    ("PATCH", "/whip/sessions/{id}/{resource}"): Row(signed_in(405, 401), at("/whip/sessions/{S}/{resource}")),
    ("POST", "/whep/sessions/{id}"): Row(visible(400, 401), at("/whep/sessions/{S}", data=BAD_SDP,
                                                               content_type="application/sdp")),
    ("OPTIONS", "/whep/sessions/{id}"): Row(public(204), at("/whep/sessions/{S}")),
    ("DELETE", "/whep/sessions/{id}/{resource}"): Row(
        outcomes(401, 403, member_b=frozenset({403, 404}), op_b=frozenset({403, 404}),
                 speaker_2=frozenset({403, 404}), member_a=200, admin=200), resource("whep", "member_a")),
    ("PATCH", "/whep/sessions/{id}/{resource}"): Row(signed_in(405, 401), at("/whep/sessions/{S}/{resource}")),
    # The hub's API for its relays: a relay's token only, never a user's, an administrator's included
    # (tests/cascade/test_relay_cli.py: what a relay's token opens).
    ("POST", "/api/v1/relay/heartbeat"): Row(public(401), at("/api/v1/relay/heartbeat", json={})),
    ("DELETE", "/api/v1/relay/heartbeat"): Row(public(401), at("/api/v1/relay/heartbeat")),
    ("POST", "/api/v1/relay/children"): Row(public(401), at("/api/v1/relay/children", json={"token": "x"})),
    ("POST", "/api/v1/relay/sessions/{id}/feed"): Row(public(401), at("/api/v1/relay/sessions/{S}/feed", data=BAD_SDP,
                                                                       content_type="application/sdp")),
    ("DELETE", "/api/v1/relay/sessions/{id}/feed/{resource}"): Row(public(401),
                                                                   at("/api/v1/relay/sessions/{S}/feed/{resource}")),
    ("POST", "/api/v1/relay/sessions/{id}/viewers"): Row(public(401), at("/api/v1/relay/sessions/{S}/viewers", json={
        "endpoint": "a" * 32, "token": "x"})),
    ("PATCH", "/api/v1/relay/sessions/{id}/viewers/{resource}"): Row(
        public(401), at("/api/v1/relay/sessions/{S}/viewers/{resource}", json={"receiving": True})),
    ("DELETE", "/api/v1/relay/sessions/{id}/viewers/{resource}"): Row(
        public(401), at("/api/v1/relay/sessions/{S}/viewers/{resource}")),
}


def served_routes(app: Any) -> set[tuple[str, str]]:
    return {(route.method, resource.canonical) for resource in app.router.resources() for route in resource}


async def test_every_served_route_has_a_row(world: World) -> None:
    served = served_routes(world.app)
    assert served - ROUTES.keys() == set(), "routes without an access row: add them to ROUTES"
    assert ROUTES.keys() - served == set(), "rows for routes the application no longer serves"


def matches(outcome: Outcome, status: int, location: str) -> bool:
    if isinstance(outcome, See):
        return status == 303 and location.startswith(outcome.prefix)
    if isinstance(outcome, frozenset):
        return status in outcome
    if outcome == 303:
        return status == 303 and not location.startswith("/login")
    return status == outcome


def _describe(outcome: Outcome) -> str:
    if isinstance(outcome, See):
        return f"303 to {outcome.prefix}..."
    if isinstance(outcome, frozenset):
        return " or ".join(map(str, sorted(outcome)))
    return str(outcome)


CASES = [(key, role) for key in ROUTES for role in ROLES]


@pytest.mark.parametrize(("route", "role"), CASES, ids=[f"{m} {p} as {r}" for (m, p), r in CASES])
async def test_route_access(world: World, route: tuple[str, str], role: str) -> None:
    method, _ = route
    row = ROUTES[route]
    call = await row.build(world, role)
    expected = row.expect[role]
    headers = world.auth(role, call.path)
    try:
        if call.websocket:
            status, location, body = await world.upgrade(call.path, headers), "", ""
        else:
            reply = await world.call(method, call.path, headers=headers, json=call.json, form=call.form,
                                     data=call.data, content_type=call.content_type)
            status, location, body = reply.status, reply.location, reply.text[:300]
    finally:
        await world.clean_up()
    assert status != 500, body
    assert matches(expected, status, location), (
        f"{method} {call.path} as {role}: expected {_describe(expected)}, got {status} {location} {body}")


# A hidden session is a missing one -------------------------------------------------------------------------

MISSING = 987654
HIDING = [(key, role) for key, row in ROUTES.items() if re.search(r"\{[SER]\}", getattr(row.build, "template", ""))
          for role in HIDDEN_FROM]


@pytest.mark.parametrize(("route", "role"), HIDING, ids=[f"{m} {p} as {r}" for (m, p), r in HIDING])
async def test_a_hidden_session_answers_as_a_missing_one(world: World, route: tuple[str, str], role: str) -> None:
    """Whoever may not see a session learns nothing of it, not even that it exists: the same answer as for an
    id that names nothing."""
    method, _ = route
    build = ROUTES[route].build
    template, extra = build.template, build.extra  # type: ignore[attr-defined]
    answers = []
    for values in (world.named, {name: MISSING for name in world.named}):
        path = template.format(**values, unit_a=world.seed.province_a.id, point_a=world.seed.point_a.id,
                               member_a=world.seed.member.id, resource="0" * 32)
        headers = world.auth(role, path)
        if extra.get("websocket"):
            answers.append(await world.upgrade(path, headers))
        else:
            reply = await world.call(method, path, headers=headers, json=extra.get("json"), form=extra.get("form"),
                                     data=extra.get("data"), content_type=extra.get("content_type"))
            answers.append(reply.status)
    hidden, missing = answers
    assert hidden == missing, f"{method} {template} as {role}: {hidden} for a hidden session, {missing} for none"


# Exports follow the report's rule ------------------------------------------------------------------------------

EXPORTS = [(fmt, role) for fmt in ("csv", "xlsx") for role in ROLES]
_TYPES = {"csv": "text/csv", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


@pytest.mark.parametrize(("fmt", "role"), EXPORTS, ids=[f"{f} as {r}" for f, r in EXPORTS])
async def test_attendance_downloads_follow_the_reports_rule(world: World, fmt: str, role: str) -> None:
    expected = ROUTES[("GET", "/api/v1/sessions/{id}/attendance")].expect[role]
    for session in ("S", "E"):
        path = f"/api/v1/sessions/{world.named[session]}/attendance?format={fmt}"
        reply = await world.call("GET", path, headers=world.auth(role, path))
        assert matches(expected, reply.status, reply.location), (
            f"{path} as {role}: expected {_describe(expected)}, got {reply.status}")
        if reply.status == 200:
            assert reply.headers["Content-Type"].startswith(_TYPES[fmt])
            assert reply.headers["Content-Disposition"].startswith("attachment;")


# The other province's hall in a session both are invited to ------------------------------------------------

async def _shared(world: World) -> dict[str, Any]:
    """A session shown in halls A and B, a member of A checked in at A, one of B at B."""
    session_id = await world.new_session([world.seed.point_a.id, world.seed.point_b.id])
    return {"session": session_id,
            "checkin_a": await world.new_checkin(session_id, world.seed.member, world.seed.point_a.id),
            "checkin_b": await world.new_checkin(session_id, world.seed.member_b, world.seed.point_b.id)}


async def _open(world: World, checkin_id: int) -> bool:
    async with world.database.session() as db:
        checkin = await db.get(Checkin, checkin_id)
        assert checkin is not None
        return checkin.removed_at is None and checkin.checked_out_at is None


async def test_hall_b_neither_lists_nor_changes_hall_as_checkins(world: World) -> None:
    shared = await _shared(world)
    sid, a = shared["session"], world.seed.point_a.id
    op_b = world.bearer(world.op_b)
    # Its own list holds its own point only.
    own = await world.call("GET", f"/api/v1/sessions/{sid}/checkins", headers=op_b)
    assert own.status == 200
    listing = await _json(own)
    assert [p["bridge_point_id"] for p in listing["points"]] == [world.seed.point_b.id]
    assert {c["id"] for c in listing["checkins"]} == {shared["checkin_b"]}
    page = await world.call("GET", f"/sessions/{sid}/checkins", headers=world.cookie(world.op_b))
    assert page.status == 200 and world.seed.member.username not in page.text
    # Asking for hall A's list, removing A's check-in, marking members at A: refused, nothing changes.
    refused = [
        await world.call("GET", f"/api/v1/sessions/{sid}/checkins?point_id={a}", headers=op_b),
        await world.call("GET", f"/sessions/{sid}/checkins?point_id={a}", headers=world.cookie(world.op_b)),
        await world.call("DELETE", f"/api/v1/checkins/{shared['checkin_a']}", headers=op_b),
        await world.call("POST", f"/sessions/{sid}/checkins/{shared['checkin_a']}/remove",
                         headers=world.cookie(world.op_b), form={"reason": "not ours"}),
        await world.call("POST", f"/api/v1/sessions/{sid}/checkins/manual", headers=op_b,
                         json={"user_id": world.seed.member.id}),
        await world.call("POST", f"/api/v1/sessions/{sid}/checkins/manual", headers=op_b,
                         json={"user_id": world.seed.member_b.id, "bridge_point_id": a}),
        await world.call("POST", f"/sessions/{sid}/checkins/manual", headers=world.cookie(world.op_b),
                         form={"user_id": str(world.seed.member.id)}),
    ]
    assert [r.status for r in refused] == [403] * len(refused), [(r.status, r.text[:120]) for r in refused]
    assert await _open(world, shared["checkin_a"])
    # A member of B cannot check A's member out either.
    out = await world.call("POST", f"/api/v1/checkins/{shared['checkin_a']}/checkout",
                           headers=world.bearer(world.seed.member_b))
    assert out.status == HIDDEN and await _open(world, shared["checkin_a"])


async def test_hall_b_gets_its_own_check_in_code_and_hall_as_code_does_not_check_in_bs_member(world: World) -> None:
    shared = await _shared(world)
    sid = shared["session"]
    code_b = await _json(await world.call("GET", f"/api/v1/sessions/{sid}/checkin-code",
                                          headers=world.bearer(world.op_b)))
    code_a = await _json(await world.call("GET", f"/api/v1/sessions/{sid}/checkin-code",
                                          headers=world.bearer(world.seed.operator)))
    assert code_b["bridge_point_id"] == world.seed.point_b.id and code_a["bridge_point_id"] == world.seed.point_a.id
    assert code_a["code"] != code_b["code"] or code_a["url"] != code_b["url"]
    # A typed code is matched against the member's own halls only: hall A's code is wrong for B's member.
    typed = await world.call("POST", "/api/v1/checkins", headers=world.bearer(world.seed.member_b),
                             json={"code": code_a["code"]})
    if code_a["code"] != code_b["code"]:
        assert typed.status == 400, typed.text
        assert (await _json(typed))["error"]["code"] == "wrong_code"


async def test_hall_bs_attendance_report_and_exports_hold_hall_b_only(world: World) -> None:
    shared = await _shared(world)
    sid = shared["session"]
    op_b = world.bearer(world.op_b)
    report = await world.call("GET", f"/api/v1/sessions/{sid}/attendance", headers=op_b)
    assert report.status == 200
    body = await _json(report)
    assert {p["bridge_point_id"] for p in body["points"]} == {world.seed.point_b.id}
    assert {m["username"] for m in body["members"]} == {world.seed.member_b.username}
    page = await world.call("GET", f"/sessions/{sid}/attendance", headers=world.cookie(world.op_b))
    assert page.status == 200 and world.seed.member.username not in page.text
    assert world.seed.point_a.name not in page.text
    csv_reply = await world.call("GET", f"/api/v1/sessions/{sid}/attendance?format=csv", headers=op_b)
    rows = list(csv.reader(io.StringIO(csv_reply.body.decode("utf-8-sig"))))
    assert world.seed.member_b.username in {r[0] for r in rows if r}
    assert world.seed.member.username not in {r[0] for r in rows if r}
    xlsx_reply = await world.call("GET", f"/api/v1/sessions/{sid}/attendance?format=xlsx", headers=op_b)
    book = load_workbook(io.BytesIO(xlsx_reply.body), read_only=True)
    cells = {str(c) for sheet in book.worksheets for row in sheet.iter_rows(values_only=True) for c in row if c}
    assert world.seed.member_b.username in cells
    assert world.seed.member.username not in cells and world.seed.point_a.name not in cells
    # A member's own history: not for the other province's operator.
    history = await world.call("GET", f"/api/v1/users/{world.seed.member.id}/attendance", headers=op_b)
    assert history.status == 403


# What listings show ---------------------------------------------------------------------------------------

# Where each of a hidden session's traces would show: a session far ahead (first in the lists, newest
# first), one about to start (first on the dashboard, soonest first), an ended one with its recording.
LISTINGS = {
    "/api/v1/sessions": ("ahead", "ended"),
    "/api/v1/sessions?status=ended": ("ended",),
    "/sessions": ("ahead", "ended"),
    "/": ("soon",),
    "/recordings": ("ended",),
}


@pytest.mark.parametrize("path", LISTINGS)
async def test_listings_name_a_session_to_who_may_see_it_only(world: World, path: str) -> None:
    point_a = [world.seed.point_a.id]
    titles = {kind: f"Rieng-A {kind} {uuid.uuid4().hex[:8]}" for kind in ("ahead", "soon", "ended")}
    await world.new_session(point_a, title=titles["ahead"], starts_in=timedelta(days=400))
    await world.new_session(point_a, title=titles["soon"], starts_in=timedelta(seconds=30))
    await world.new_recording(await world.new_session(point_a, title=titles["ended"]), extras=False)
    for role in VISIBLE_TO + HIDDEN_FROM:
        reply = await world.call("GET", path, headers=world.auth(role, path))
        assert reply.status == 200, (path, role)
        shown = {kind for kind, title in titles.items() if title in reply.text}
        if role in HIDDEN_FROM:
            assert not shown, f"{path} shows {role} the hidden session(s) {shown}"
        else:
            assert shown >= set(LISTINGS[path]), f"{path} does not show {role} {set(LISTINGS[path]) - shown}"


async def _json(reply: Any) -> Any:
    import json

    return json.loads(reply.body)


# The live protocol ----------------------------------------------------------------------------------------

# Messages only hosts may ever receive.
HOST_ONLY = {"roll_call", "roster", "question", "sources", "floor_ended"}
# What a message aimed at hall A would have it receive.
HALL_EFFECTS = {"floor_granted", "floor_revoked", "mute", "removed"}

ACTORS = ("host", "host_admin", "hall_a", "hall_b", "member_a", "member_b", "admin_as_member")
_ACTOR_USER = {"host": "speaker", "host_admin": "admin", "hall_a": "op_a", "hall_b": "op_b", "member_a": "member_a",
               "member_b": "member_b", "admin_as_member": "admin"}
HOSTS = ("host", "host_admin")


async def _socket(world: World, session_id: int, role: str) -> LiveClient:
    ws = await world.client.ws_connect(f"/ws/sessions/{session_id}", headers=world.bearer(world.user(role)))
    live = LiveClient(ws)
    OPENED.append(live)
    return live


async def _joined(world: World, session_id: int, role: str, **join: Any) -> LiveClient:
    live = await _socket(world, session_id, role)
    await live.send("join", **join)
    await live.expect("welcome")
    return live


async def _settle(live: LiveClient) -> None:
    """Wait until everything the server did for the messages sent so far reached this socket (a ping's pong)."""
    if live.ws.closed:
        return
    since = live.mark()
    token = int(uuid.uuid4().int % 2**40)
    try:
        await live.send("ping", t=token)
    except (ConnectionError, RuntimeError):
        return
    await live.expect("pong", since=since, t=token)


# (user, "as") -> the seat it gets, or "forbidden".
JOINS: dict[tuple[str, str | None], str] = {}
for _user_role, _seat in (("speaker", "host"), ("admin", "host"), ("op_a", "hall"), ("op_b", "hall"),
                          ("member_a", "member"), ("member_b", "member")):
    JOINS[(_user_role, None)] = _seat
    JOINS[(_user_role, "member")] = "member"
    JOINS[(_user_role, "host")] = "host" if _seat == "host" else "forbidden"
    JOINS[(_user_role, "hall")] = "hall" if _seat == "hall" else "forbidden"


@pytest.mark.parametrize(("user_role", "wanted"), list(JOINS), ids=[f"{u} as {w}" for u, w in JOINS])
async def test_join_gives_the_seat_the_account_allows_never_more(world: World, user_role: str,
                                                                 wanted: str | None) -> None:
    session_id = await world.new_session([world.seed.point_a.id, world.seed.point_b.id])
    live = await _socket(world, session_id, user_role)
    try:
        await live.send("join", **({"as": wanted} if wanted else {}))
        expected = JOINS[(user_role, wanted)]
        if expected == "forbidden":
            error = await live.expect("error", request="join")
            assert error["code"] == "forbidden", error
            await _settle(live)
            assert live.last("welcome") is None
            # Still not joined: anything else is refused as such.
            since = live.mark()
            await live.send("raise_hand")
            assert (await live.expect("error", since=since))["code"] == "not_joined"
        else:
            you = (await live.expect("welcome"))["you"]
            assert you["role"] == expected
            if expected == "hall":
                point = world.seed.point_a if user_role == "op_a" else world.seed.point_b
                assert you["point_id"] == point.id and you["key"] == f"point:{point.id}"
            else:
                assert you["point_id"] is None and you["key"] == f"user:{world.user(user_role).id}"
            await _settle(live)
            if expected != "host":
                assert not {m["type"] for m in live.received} & HOST_ONLY
    finally:
        await live.close()


@dataclass(frozen=True)
class Expect:
    """What the sender of a live message gets when its seat may send it.

    ``reply``: a message type the sender receives; ``error``: an error code (not ``forbidden``: the seat
    may, the request is wrong); ``hall``: a message type hall A receives; ``closed``: the sender's
    socket closes with this code; nothing: no error at all.
    """

    reply: str | None = None
    error: str | None = None
    hall: str | None = None
    closed: int | None = None


FORBIDDEN = "forbidden"


@dataclass(frozen=True)
class LiveCase:
    message: Callable[[World], dict[str, Any]]
    expect: dict[str, Expect | str]
    # Before the message: hall A has raised its hand / holds the floor; the session is live.
    hand: bool = False
    floor: bool = False
    live: bool = False


def by_seat(host: Expect | str, hall: Expect | str, member: Expect | str, **actors: Expect | str) -> dict[str, Expect | str]:
    table = {"host": host, "host_admin": host, "hall_a": hall, "hall_b": hall, "member_a": member,
             "member_b": member, "admin_as_member": member}
    table.update(actors)
    return table


def _a(world: World) -> int:
    return world.seed.point_a.id


OK = Expect()
MESSAGES: dict[str, LiveCase] = {
    "offer view": LiveCase(lambda w: {"type": "offer", "pc": "view", "sdp": BAD_SDP},
                           by_seat(Expect(error="bad_sdp"), Expect(error="bad_sdp"), Expect(error="bad_sdp"))),
    "offer publish": LiveCase(lambda w: {"type": "offer", "pc": "publish", "sdp": BAD_SDP},
                              by_seat(Expect(error="bad_sdp"), FORBIDDEN, FORBIDDEN)),
    "offer publish (hall A holds the floor)": LiveCase(
        lambda w: {"type": "offer", "pc": "publish", "sdp": BAD_SDP},
        by_seat(Expect(error="bad_sdp"), FORBIDDEN, FORBIDDEN, hall_a=Expect(error="bad_sdp")), floor=True),
    "candidate": LiveCase(lambda w: {"type": "candidate", "pc": "view", "candidate": ""},
                          by_seat(Expect(error="no_peer_connection"), Expect(error="no_peer_connection"),
                                  Expect(error="no_peer_connection"))),
    "close_pc": LiveCase(lambda w: {"type": "close_pc", "pc": "publish"}, by_seat(OK, OK, OK)),
    "raise_hand": LiveCase(lambda w: {"type": "raise_hand"}, by_seat(FORBIDDEN, Expect(reply="floor"), FORBIDDEN)),
    "lower_hand": LiveCase(lambda w: {"type": "lower_hand"},
                           by_seat(Expect(error="invalid_message"), OK, FORBIDDEN), hand=True),
    "lower_hand of hall A": LiveCase(lambda w: {"type": "lower_hand", "point_id": _a(w)},
                                     by_seat(Expect(hall="floor"), FORBIDDEN, FORBIDDEN, hall_a=Expect(reply="floor")),
                                     hand=True),
    "grant_floor to hall A": LiveCase(lambda w: {"type": "grant_floor", "point_id": _a(w)},
                                      by_seat(Expect(hall="floor_granted"), FORBIDDEN, FORBIDDEN), hand=True),
    "revoke_floor": LiveCase(lambda w: {"type": "revoke_floor"},
                             by_seat(Expect(hall="floor_revoked"), FORBIDDEN, FORBIDDEN), floor=True),
    "show": LiveCase(lambda w: {"type": "show", "source": "speaker"},
                     by_seat(Expect(reply="floor"), FORBIDDEN, FORBIDDEN), floor=True),
    "mute hall A": LiveCase(lambda w: {"type": "mute", "point_id": _a(w), "muted": True},
                            by_seat(Expect(hall="mute"), FORBIDDEN, FORBIDDEN)),
    "remove hall A": LiveCase(lambda w: {"type": "remove", "key": f"point:{_a(w)}"},
                              by_seat(Expect(hall="removed"), FORBIDDEN, FORBIDDEN)),
    "remove member A": LiveCase(lambda w: {"type": "remove", "key": f"user:{w.seed.member.id}"},
                                by_seat(Expect(error="unknown_participant"), FORBIDDEN, FORBIDDEN,
                                        member_a=FORBIDDEN)),
    "question": LiveCase(lambda w: {"type": "question", "text": "Xin hỏi mục 3?"},
                         by_seat(FORBIDDEN, Expect(reply="question_received"), Expect(reply="question_received"))),
    # A hall's page reports what its browser decodes; nobody else's figures count on the board.
    "stats": LiveCase(lambda w: {"type": "stats", "frames_decoded": 300, "freezes": 0, "fps": 30, "audio_level": 10},
                      by_seat(FORBIDDEN, OK, FORBIDDEN)),
    "start": LiveCase(lambda w: {"type": "start"}, by_seat(Expect(reply="session"), FORBIDDEN, FORBIDDEN)),
    "end": LiveCase(lambda w: {"type": "end"}, by_seat(Expect(closed=CLOSE_NORMAL), FORBIDDEN, FORBIDDEN), live=True),
    "leave": LiveCase(lambda w: {"type": "leave"},
                      by_seat(Expect(closed=CLOSE_NORMAL), Expect(closed=CLOSE_NORMAL), Expect(closed=CLOSE_NORMAL))),
    "ping": LiveCase(lambda w: {"type": "ping", "t": 7}, by_seat(Expect(reply="pong"), Expect(reply="pong"),
                                                                  Expect(reply="pong"))),
}


async def test_every_client_message_has_a_live_case() -> None:
    covered = {name.split()[0] for name in MESSAGES}
    # join has its own table (JOINS).
    assert covered | {"join"} == set(CLIENT_MESSAGES), "a client message without an access case"


LIVE_CASES = [(name, actor) for name in MESSAGES for actor in ACTORS]


@pytest.mark.parametrize(("name", "actor"), LIVE_CASES, ids=[f"{n} by {a}" for n, a in LIVE_CASES])
async def test_live_message_access(world: World, name: str, actor: str) -> None:
    case = MESSAGES[name]
    expected = case.expect[actor]
    seed = world.seed
    status = SessionStatus.LIVE if case.live else SessionStatus.SCHEDULED
    session_id = await world.new_session([seed.point_a.id, seed.point_b.id], status=status)
    sockets: list[LiveClient] = []
    try:
        hall_a = await _joined(world, session_id, "op_a")
        sockets.append(hall_a)
        if case.hand or case.floor:
            await hall_a.send("raise_hand")
        host: LiveClient | None = None
        if case.floor:
            host = await _joined(world, session_id, "speaker")
            sockets.append(host)
            await host.send("grant_floor", point_id=seed.point_a.id)
            await hall_a.expect("floor_granted")
        await _settle(hall_a)
        if actor == "hall_a":
            sender = hall_a
        elif actor == "host" and host is not None:
            sender = host
        else:
            sender = await _joined(world, session_id, _ACTOR_USER[actor],
                                   **({"as": "member"} if actor == "admin_as_member" else {}))
            sockets.append(sender)
        await _settle(hall_a)
        sent_at, hall_at = sender.mark(), hall_a.mark()
        message = case.message(world)
        await sender.ws.send_json(message)
        kind = message["type"]
        if isinstance(expected, Expect) and expected.closed is not None:
            await _closed(sender)
            assert sender.closed_code == expected.closed
        else:
            await _settle(sender)
        if isinstance(expected, Expect) and expected.hall is not None and not hall_a.ws.closed:
            await hall_a.expect(expected.hall, since=hall_at)
        await _settle(hall_a)
        errors = [m for m in sender.received[sent_at:] if m["type"] == "error" and m.get("request") == kind]
        codes = [e["code"] for e in errors]
        if expected == FORBIDDEN:
            assert codes == ["forbidden"], f"{name} by {actor}: expected forbidden, got {errors or 'no error'}"
            # Refused means nothing happened: hall A was told nothing, the session did not move.
            told = {m["type"] for m in hall_a.received[hall_at:]} & HALL_EFFECTS
            assert not told, f"{name} by {actor} was refused but hall A received {told}"
            assert not hall_a.ws.closed or actor == "hall_a"
            async with world.database.session() as db:
                stored = await db.get(Session, session_id)
                assert stored is not None and stored.status is status
            if name == "lower_hand of hall A":
                floor = hall_a.last("floor")
                assert floor and [q["point_id"] for q in floor["queue"]] == [seed.point_a.id]
        else:
            assert isinstance(expected, Expect)
            assert "forbidden" not in codes, f"{name} by {actor}: refused ({errors}), expected allowed"
            assert codes == ([expected.error] if expected.error else []), f"{name} by {actor}: {errors}"
            if expected.reply:
                await sender.expect(expected.reply, since=sent_at)
            if name == "raise_hand":
                floor = [m for m in sender.received[sent_at:] if m["type"] == "floor"][-1]
                mine = seed.point_a.id if actor == "hall_a" else seed.point_b.id
                assert mine in [q["point_id"] for q in floor["queue"]]
            if name == "lower_hand of hall A":
                assert hall_a.last("floor")["queue"] == []
            if name == "remove hall A":
                await _closed(hall_a)
                assert hall_a.closed_code == CLOSE_REMOVED
            if name in ("start", "end"):
                async with world.database.session() as db:
                    stored = await db.get(Session, session_id)
                    assert stored is not None
                    assert stored.status is (SessionStatus.LIVE if name == "start" else SessionStatus.ENDED)
        # Hosts' information reaches hosts only, whatever was sent.
        for live in sockets:
            you = (live.last("welcome") or {}).get("you", {})
            if you.get("role") != "host":
                leaked = {m["type"] for m in live.received} & HOST_ONLY
                assert not leaked, f"a {you.get('role')} socket received host-only messages {leaked}"
    finally:
        for live in sockets:
            if not live.ws.closed:
                await live.close()


async def _closed(live: LiveClient, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while live.closed_code is None and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert live.closed_code is not None, "the socket was not closed"


async def test_a_question_reaches_the_hosts_only(world: World) -> None:
    seed = world.seed
    session_id = await world.new_session([seed.point_a.id, seed.point_b.id])
    host = await _joined(world, session_id, "speaker")
    hall_a = await _joined(world, session_id, "op_a")
    hall_b = await _joined(world, session_id, "op_b")
    member_a = await _joined(world, session_id, "member_a")
    member_b = await _joined(world, session_id, "member_b")
    try:
        await member_b.send("question", text="Câu hỏi của tỉnh B")
        await hall_b.send("question", text="Câu hỏi của điểm cầu B")
        asked = [await host.expect("question", text="Câu hỏi của tỉnh B"),
                 await host.expect("question", text="Câu hỏi của điểm cầu B")]
        assert asked[0]["key"] == f"user:{seed.member_b.id}" and asked[1]["point_id"] == seed.point_b.id
        for live in (hall_a, hall_b, member_a, member_b):
            await _settle(live)
            assert not [m for m in live.received if m["type"] == "question"], "a question reached a non-host"
    finally:
        for live in (host, hall_a, hall_b, member_a, member_b):
            await live.close()
