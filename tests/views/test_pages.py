"""Pages through the test client: sign-in, CSRF, forms, language, errors."""

import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server import keys
from server.app import create_app
from server.config import Settings
from server.storage import sessions as session_store
from server.storage.models import Session
from server.storage.users import user_by_username
from tests.conftest import TEST_PASSWORD, Seed, csrf_of, login, make_settings


class _Elements(HTMLParser):
    """The text inside each element with a given id, and the table rows (as lists of cell texts)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.attrs_by_id: dict[str, dict[str, str | None]] = {}
        self.rows: list[list[str]] = []
        self._open: list[tuple[str, str | None]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.attrs_by_id[str(found["id"])] = found
        if tag in ("input", "meta", "link", "img", "br"):
            if found.get("id"):
                self.by_id.setdefault(str(found["id"]), "")
            return
        self._open.append((tag, found.get("id")))
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            name, ident = self._open.pop()
            if ident:
                self.by_id.setdefault(ident, "")
            if name == tag:
                break
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        for _name, ident in self._open:
            if ident:
                self.by_id[ident] = self.by_id.get(ident, "") + data
        if self._cell is not None:
            self._cell.append(data)

    def text(self, ident: str) -> str:
        return " ".join(self.by_id[ident].split())


async def _switch_language(client: TestClient, csrf: str, locale: str) -> None:
    response = await client.post("/lang", data={"locale": locale, "next": "/", "csrf_token": csrf},
                                 allow_redirects=False)
    assert response.status == 303


async def test_login_sets_an_httponly_lax_cookie_and_redirects(client: TestClient, seed: Seed) -> None:
    csrf = await csrf_of(client)
    response = await client.post("/login", data={"username": "admin", "password": TEST_PASSWORD, "csrf_token": csrf,
                                                 "next": "/users"}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/users"
    cookie = response.cookies["bc_token"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["secure"] == ""  # plain http here; Secure behind TLS
    page = await client.get("/users")
    assert page.status == 200
    assert "member-a" in await page.text()


async def test_login_refuses_open_redirects(client: TestClient, seed: Seed) -> None:
    csrf = await csrf_of(client)
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example", "/\t/evil.example",
                   "/\n/evil.example"):
        response = await client.post("/login", data={"username": "admin", "password": TEST_PASSWORD,
                                                     "csrf_token": csrf, "next": target}, allow_redirects=False)
        assert response.headers["Location"] == "/"
        await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)


async def test_wrong_password_shows_the_form_again(client: TestClient, seed: Seed) -> None:
    csrf = await csrf_of(client)
    response = await client.post("/login", data={"username": "admin", "password": "not it at all",
                                                 "csrf_token": csrf})
    assert response.status == 401
    assert 'name="password"' in await response.text()
    assert "bc_token" not in response.cookies


async def test_form_posts_without_the_csrf_token_are_refused(client: TestClient, seed: Seed) -> None:
    csrf = await login(client, "admin")
    for token in ("", "x" * 43):
        response = await client.post("/units", data={"name": "X", "slug": "x", "level": "central",
                                                     "csrf_token": token})
        assert response.status == 403
    response = await client.post("/units", data={"name": "X", "slug": "x", "level": "province",
                                                 "parent_id": str(seed.central.id), "csrf_token": csrf},
                                 allow_redirects=False)
    assert response.status == 303


async def test_cross_site_posts_are_refused_even_with_the_token(client: TestClient, seed: Seed) -> None:
    csrf = await login(client, "admin")
    response = await client.post("/units", data={"name": "X", "slug": "x", "level": "central", "csrf_token": csrf},
                                 headers={"Origin": "https://evil.example"})
    assert response.status == 403


async def test_cookie_api_writes_need_the_csrf_header(client: TestClient, seed: Seed) -> None:
    csrf = await login(client, "admin")
    body = {"name": "Y", "slug": "y", "level": "province", "parent_id": seed.central.id}
    refused = await client.post("/api/v1/units", json=body)
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "csrf_failed"
    accepted = await client.post("/api/v1/units", json=body, headers={"X-CSRF-Token": csrf})
    assert accepted.status == 201


async def test_logout_ends_the_browser_session(client: TestClient, seed: Seed) -> None:
    csrf = await login(client, "member-a")
    assert (await client.get("/", allow_redirects=False)).status == 200
    await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    response = await client.get("/", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/login")


async def test_admin_schedules_a_session_through_the_form(client: TestClient, seed: Seed) -> None:
    csrf = await login(client, "admin")
    form = [("title", "Học tập Nghị quyết"), ("description", "Buổi 1"), ("speaker_id", str(seed.speaker.id)),
            ("scheduled_start", "2026-12-02T08:00"), ("scheduled_end", "2026-12-02T10:30"),
            ("invited_point_ids", str(seed.point_a.id)), ("invited_point_ids", str(seed.point_b.id)),
            ("csrf_token", csrf)]
    response = await client.post("/sessions/new", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()
    session_path = response.headers["Location"].split("?")[0]
    detail = await client.get(session_path)
    text = await detail.text()
    assert "Học tập Nghị quyết" in text
    assert "02/12/2026" in text and "08:00" in text  # shown in the configured zone, as entered
    assert seed.point_a.name in text and seed.point_b.name in text
    async with client.app[keys.DATABASE].session() as db:
        session = await db.get(Session, int(session_path.rsplit("/", 1)[1]))
        assert session is not None
        assert session.scheduled_start.hour == 1  # 08:00 +07:00 stored as 01:00 UTC


async def test_invalid_session_form_keeps_the_input_and_names_the_problem(client: TestClient, seed: Seed) -> None:
    csrf = await login(client, "admin")
    response = await client.post("/sessions/new", data={
        "title": "Giữ lại tiêu đề", "scheduled_start": "2026-12-02T10:00", "scheduled_end": "2026-12-02T09:00",
        "csrf_token": csrf})
    assert response.status == 422
    page = _Elements(await response.text())
    assert page.attrs_by_id["f-title"]["value"] == "Giữ lại tiêu đề"
    # The end field, and only it, is marked wrong, with the reason in Vietnamese.
    assert page.attrs_by_id["f-scheduled_end"].get("aria-invalid") == "true"
    assert "f-scheduled_end-error" in (page.attrs_by_id["f-scheduled_end"].get("aria-describedby") or "")
    assert page.text("f-scheduled_end-error") == "Thời điểm kết thúc phải sau thời điểm bắt đầu."
    assert "aria-invalid" not in page.attrs_by_id["f-scheduled_start"]


async def test_language_switch_persists(client: TestClient, seed: Seed) -> None:
    await _session_for(client, seed, [seed.point_a.id])
    csrf = await login(client, "admin")
    before = await client.get("/sessions")
    assert before.headers["Content-Language"] == "vi"
    vietnamese = _Elements(await before.text())
    response = await client.post("/lang", data={"locale": "en", "next": "/sessions", "csrf_token": csrf},
                                 allow_redirects=False)
    assert response.headers["Location"] == "/sessions"
    # The same page, now in English, and it stays so on the next request.
    for _ in range(2):
        after = await client.get("/sessions")
        assert after.headers["Content-Language"] == "en"
        assert 'lang="en"' in await after.text()
        english = _Elements(await after.text())
        assert english.rows[0] == ["Title", "Schedule", "Status", "Bridge points"]
    assert vietnamese.rows[0] == ["Tên hội nghị", "Thời gian", "Trạng thái", "Điểm cầu"]


async def test_pages_carry_security_headers(client: TestClient, seed: Seed) -> None:
    response = await client.get("/login")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_password_change_revokes_other_sessions_but_keeps_this_one(
        aiohttp_client: Any, app: web.Application, settings: Settings, seed: Seed) -> None:
    here = await aiohttp_client(app)
    # Another browser on another server process of the same database (each process is its own node).
    elsewhere = await aiohttp_client(create_app(make_settings(settings.data_dir,
                                                              attendance={"node_name": "hub-2"})))
    csrf = await login(here, "member-a")
    await login(elsewhere, "member-a")
    response = await here.post("/account/password", data={"current_password": TEST_PASSWORD,
                                                          "new_password": "a fresh password", "csrf_token": csrf},
                               allow_redirects=False)
    assert response.status == 303
    assert (await here.get("/", allow_redirects=False)).status == 200
    assert (await elsewhere.get("/", allow_redirects=False)).status == 303


async def test_wrong_current_password_is_refused(client: TestClient, seed: Seed) -> None:
    csrf = await login(client, "member-a")
    response = await client.post("/account/password", data={"current_password": "not my password",
                                                            "new_password": "a fresh password", "csrf_token": csrf})
    assert response.status == 422


async def test_members_csv_import_page_reports_rows(client: TestClient, seed: Seed) -> None:
    from aiohttp import FormData

    csrf = await login(client, "admin")
    form = FormData()
    form.add_field("csrf_token", csrf)
    form.add_field("file", b"username,full_name,unit,password\nok-1,Ok,tinh-a,long enough\nbad,,tinh-a,x\n",
                   filename="members.csv", content_type="text/csv")
    response = await client.post("/users/import", data=form)
    assert response.status == 422
    problems = [(row[0], row[1]) for row in _Elements(await response.text()).rows if row and row[0].isdigit()]
    # The bad row (line 3 of the file) is named with each of its two problems; the good row is not.
    assert sorted(problems) == [("3", "full_name"), ("3", "password")]
    async with client.app[keys.DATABASE].session() as db:
        assert await user_by_username(db, "ok-1") is None  # all or nothing


async def _add_provinces(client: TestClient, seed: Seed, names: tuple[str, ...]) -> list[int]:
    """Provinces with a hall each, named ``names``; the halls' ids."""
    from server.storage import units as unit_store

    ids = []
    async with client.app[keys.DATABASE].session() as db:
        for index, name in enumerate(names):
            unit = await unit_store.create_unit(db, {"name": f"Tỉnh {name}", "slug": f"p{index}", "level": "province",
                                                     "parent_id": seed.central.id})
            point = await unit_store.create_point(db, {"name": f"Điểm cầu {name}", "slug": f"p{index}",
                                                       "unit_id": unit.id})
            ids.append(point.id)
    return ids


async def test_pages_and_the_api_list_names_in_vietnamese_order(client: TestClient, seed: Seed) -> None:
    # Byte order puts "Đắk Lắk" after "Gia Lai" (U+0110 > "G").
    await _add_provinces(client, seed, ("Gia Lai", "Đắk Lắk"))
    await login(client, "admin")
    page = await (await client.get("/bridge-points")).text()
    assert page.index("Điểm cầu Đắk Lắk") < page.index("Điểm cầu Gia Lai")
    units = await (await client.get("/units")).text()
    assert units.index("Tỉnh Đắk Lắk") < units.index("Tỉnh Gia Lai")
    points = [p["name"] for p in (await (await client.get("/api/v1/bridge-points")).json())["bridge_points"]]
    assert points.index("Điểm cầu Đắk Lắk") == points.index("Điểm cầu Gia Lai") - 1
    names = [u["name"] for u in (await (await client.get("/api/v1/units")).json())["units"]]
    assert names.index("Tỉnh Đắk Lắk") == names.index("Tỉnh Gia Lai") - 1


async def _session_for(client: TestClient, seed: Seed, point_ids: list[int], *, speaker: bool = True,
                       start: datetime | None = None) -> int:
    begins = start or datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    async with client.app[keys.DATABASE].session() as db:
        session = await session_store.create_session(db, {
            "title": "Quán triệt Nghị quyết", "speaker_id": seed.speaker.id if speaker else None,
            "scheduled_start": begins, "scheduled_end": begins + timedelta(hours=2),
            "invited_point_ids": point_ids}, seed.admin.id)
        return session.id


@pytest.mark.parametrize(("username", "code", "vietnamese", "english"), [
    # A member of province A, for a session shown only in province B's hall.
    ("member-a", "other_units", ["Hội nghị này không mở cho đơn vị của bạn", "điểm cầu của đơn vị bạn"],
     ["This session is not open to your unit", "invite a bridge point of your unit"]),
    # Province A's operator, for a session its bridge point is not invited to.
    ("op-a", "not_invited", ["Hội nghị này không mở cho điểm cầu của bạn", "thêm điểm cầu"],
     ["This session is not open to your bridge point", "add your bridge point"]),
])
async def test_a_refused_session_says_why_in_the_readers_language(
        client: TestClient, seed: Seed, username: str, code: str, vietnamese: list[str], english: list[str]) -> None:
    session_id = await _session_for(client, seed, [seed.point_b.id])
    csrf = await login(client, username)
    for locale, expected, other in (("vi", vietnamese, english), ("en", english, vietnamese)):
        await _switch_language(client, csrf, locale)
        for path in (f"/sessions/{session_id}", f"/sessions/{session_id}/live"):
            response = await client.get(path)
            assert response.status == 404
            assert response.headers["Content-Language"] == locale
            text = " ".join((await response.text()).split())
            assert f'data-code="{code}"' in text
            for phrase in expected:
                assert phrase in text, (locale, path, phrase)
            for phrase in other:
                assert phrase not in text, (locale, path, phrase)
    # The API keeps its error body, with the same stable code.
    api = await client.get(f"/api/v1/sessions/{session_id}")
    assert api.status == 404
    body = await api.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert set(body["error"]) == {"code", "message"}


async def test_every_refusal_page_is_translated_by_its_code(client: TestClient, seed: Seed) -> None:
    csrf = await login(client, "member-a")
    pages = {"/users": (403, "forbidden", "Không có quyền truy cập"),
             # A member asking for a missing session hears what it would for a hidden one.
             "/sessions/424242": (404, "other_units", "Hội nghị này không mở cho đơn vị của bạn"),
             "/no/such/page": (404, "not_found", "Không tìm thấy trang")}
    for path, (status, code, heading) in pages.items():
        response = await client.get(path)
        assert response.status == status
        assert "text/html" in response.headers["Content-Type"]
        page = await response.text()
        assert f'data-code="{code}"' in page
        assert f"<h1>{heading}</h1>" in page
    # A form posted without its token: refused with the reason, not a bare 403.
    expired = await client.post("/account/password", data={"csrf_token": "x" * 43, "current_password": "a",
                                                           "new_password": "b"})
    assert expired.status == 403
    assert "<h1>Biểu mẫu đã hết hạn</h1>" in await expired.text()
    await _switch_language(client, csrf, "en")
    assert "<h1>Access denied</h1>" in await (await client.get("/users")).text()


def _json_block(html: str, ident: str) -> Any:
    match = re.search(rf'<script type="application/json" id="{ident}">(.*?)</script>', html, re.S)
    assert match, ident
    return json.loads(match.group(1))


async def test_the_console_has_the_schedule_and_zone_for_its_checks(
        aiohttp_client: Any, tmp_path: Any, migrated_sqlite: Any, password_hash: str) -> None:
    import shutil

    from server.storage.db import Database
    from tests.conftest import make_settings, seed_database

    # A server configured for another zone than the default: the page must carry that one.
    data_dir = tmp_path / "tokyo"
    data_dir.mkdir()
    shutil.copy(migrated_sqlite, data_dir / "bridgecast.db")
    settings = make_settings(data_dir, i18n={"timezone": "Asia/Tokyo"})
    database = Database(settings.effective_database_url)
    seed = await seed_database(database, password_hash)
    await database.close()
    client = await aiohttp_client(create_app(settings))
    halls = await _add_provinces(client, seed, ("Gia Lai", "Đắk Lắk"))
    start = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
    session_id = await _session_for(client, seed, [*halls, seed.point_a.id], start=start)

    await login(client, "speaker")
    html = await (await client.get(f"/sessions/{session_id}/live")).text()
    page = _json_block(html, "live-page")
    assert page["timezone"] == "Asia/Tokyo"
    assert datetime.fromisoformat(page["scheduledStart"]) == start
    assert datetime.fromisoformat(page["scheduledEnd"]) == start + timedelta(hours=2)
    assert page["earlyStartMinutes"] == 30
    # The confirmation says when the session is scheduled, in that zone.
    dialog = html[html.index('<dialog id="start-dialog"'):]
    dialog = " ".join(dialog[:dialog.index("</dialog>")].split())
    assert "02/12/2026" in dialog and "10:00 – 12:00" in dialog and "Asia/Tokyo" in dialog
    # The helpers load after the protocol and before the page script.
    scripts = [html.index(f"js/{name}.js") for name in ("protocol", "ui", "console")]
    assert scripts == sorted(scripts)
    # The roll call starts in alphabetical order (the server's, which roll_call keeps).
    rows = re.findall(r'<span class="rc-point">(.*?)</span>', html)
    assert rows == ["Điểm cầu A", "Điểm cầu Đắk Lắk", "Điểm cầu Gia Lai"]


async def test_the_dashboards_date_badge_names_the_month_in_each_language(client: TestClient, seed: Seed) -> None:
    from zoneinfo import ZoneInfo

    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=10)
    await _session_for(client, seed, [seed.point_a.id], start=start)
    local = start.astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    csrf = await login(client, "member-a")

    def badge(html: str) -> tuple[str, str]:
        day = re.search(r'<span class="date-chip-day">(.*?)</span>', html)
        month = re.search(r'<span class="date-chip-month">(.*?)</span>', html)
        assert day and month
        return day.group(1), month.group(1)

    assert badge(await (await client.get("/")).text()) == (f"{local.day:02d}", f"Tháng {local.month}")
    await _switch_language(client, csrf, "en")
    english = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][local.month - 1]
    assert badge(await (await client.get("/")).text()) == (f"{local.day:02d}", english)
