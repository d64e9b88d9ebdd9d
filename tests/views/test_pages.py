"""Pages through the test client: sign-in, CSRF, forms, language, errors."""

import re
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from server import keys
from server.app import create_app
from server.config import Settings
from server.storage.users import user_by_username

from server.storage.models import Session
from tests.conftest import TEST_PASSWORD, Seed, csrf_of, login


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
    text = await response.text()
    assert 'value="Giữ lại tiêu đề"' in text
    assert "scheduled_end" in text


async def test_language_switch_persists(client: TestClient, seed: Seed) -> None:
    csrf = await login(client, "admin")
    vietnamese = await (await client.get("/")).text()
    assert 'lang="vi"' in vietnamese
    response = await client.post("/lang", data={"locale": "en", "next": "/sessions", "csrf_token": csrf},
                                 allow_redirects=False)
    assert response.headers["Location"] == "/sessions"
    english = await (await client.get("/sessions")).text()
    assert 'lang="en"' in english
    assert english != vietnamese


async def test_error_pages_for_missing_and_forbidden(client: TestClient, seed: Seed) -> None:
    await login(client, "member-a")
    missing = await client.get("/sessions/424242")
    assert missing.status == 404
    assert "text/html" in missing.headers["Content-Type"]
    forbidden = await client.get("/users")
    assert forbidden.status == 403
    assert "text/html" in forbidden.headers["Content-Type"]
    nowhere = await client.get("/no/such/page")
    assert nowhere.status == 404


async def test_pages_carry_security_headers(client: TestClient, seed: Seed) -> None:
    response = await client.get("/login")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_password_change_revokes_other_sessions_but_keeps_this_one(
        aiohttp_client: Any, app: web.Application, settings: Settings, seed: Seed) -> None:
    here = await aiohttp_client(app)
    elsewhere = await aiohttp_client(create_app(settings))  # another browser, same database
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
    text = await response.text()
    assert re.search(r"\b3\b", text)  # the bad row's line number is shown
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
