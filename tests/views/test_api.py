"""The JSON API through aiohttp's test client."""

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server import keys
from server.auth.tokens import issue_token
from tests.conftest import TEST_PASSWORD, Seed, bearer

START = "2026-12-01T08:00:00+07:00"
END = "2026-12-01T11:00:00+07:00"


def error_of(body: dict[str, Any]) -> str:
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])
    return body["error"]["code"]


async def test_token_login_and_me(client: TestClient, seed: Seed) -> None:
    response = await client.post("/api/v1/auth/token", json={"username": "speaker", "password": TEST_PASSWORD})
    assert response.status == 201
    body = await response.json()
    assert body["user"]["role"] == "speaker"
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status == 200
    assert (await me.json())["username"] == "speaker"


async def test_wrong_password_is_401_with_the_error_shape(client: TestClient, seed: Seed) -> None:
    response = await client.post("/api/v1/auth/token", json={"username": "speaker", "password": "wrong password"})
    assert response.status == 401
    assert error_of(await response.json()) == "invalid_credentials"


async def test_login_attempts_are_slowed_per_account_and_source(client: TestClient, seed: Seed) -> None:
    free = client.app[keys.SETTINGS].auth.login_free_attempts
    for _ in range(free):
        response = await client.post("/api/v1/auth/token", json={"username": "admin", "password": "bad password"})
        assert response.status == 401
    response = await client.post("/api/v1/auth/token", json={"username": "admin", "password": TEST_PASSWORD})
    assert response.status == 429  # even the right password waits out the delay, from this source
    assert int(response.headers["Retry-After"]) > 0
    assert error_of(await response.json()) == "too_many_requests"


async def test_admin_creates_reads_updates_and_cancels_a_session(client: TestClient, seed: Seed) -> None:
    auth = bearer(client.app, seed.admin)
    created = await client.post("/api/v1/sessions", headers=auth, json={
        "title": "Quán triệt Nghị quyết", "speaker_id": seed.speaker.id, "scheduled_start": START,
        "scheduled_end": END, "invited_point_ids": [seed.point_a.id, seed.point_b.id]})
    assert created.status == 201, await created.text()
    session = await created.json()
    assert created.headers["Location"] == f"/api/v1/sessions/{session['id']}"
    assert session["status"] == "scheduled"
    assert session["scheduled_start"] == "2026-12-01T01:00:00+00:00"
    assert session["invited_point_ids"] == sorted([seed.point_a.id, seed.point_b.id])

    patched = await client.patch(f"/api/v1/sessions/{session['id']}", headers=auth,
                                 json={"title": "Renamed", "invited_point_ids": [seed.point_b.id]})
    assert patched.status == 200
    assert (await patched.json())["invited_point_ids"] == [seed.point_b.id]

    fetched = await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)
    assert (await fetched.json())["title"] == "Renamed"

    cancelled = await client.post(f"/api/v1/sessions/{session['id']}/cancel", headers=auth)
    assert (await cancelled.json())["status"] == "cancelled"
    again = await client.post(f"/api/v1/sessions/{session['id']}/cancel", headers=auth)
    assert again.status == 409
    assert error_of(await again.json()) == "invalid_status"


async def test_members_see_only_their_sessions(client: TestClient, seed: Seed) -> None:
    admin = bearer(client.app, seed.admin)
    for point in (seed.point_a, seed.point_b):
        response = await client.post("/api/v1/sessions", headers=admin, json={
            "title": point.name, "scheduled_start": START, "scheduled_end": END, "invited_point_ids": [point.id]})
        assert response.status == 201
    listing = await client.get("/api/v1/sessions", headers=bearer(client.app, seed.member))
    titles = [s["title"] for s in (await listing.json())["sessions"]]
    assert titles == [seed.point_a.name]
    other = (await (await client.get("/api/v1/sessions", headers=admin)).json())["sessions"]
    hidden = next(s for s in other if s["title"] == seed.point_b.name)
    response = await client.get(f"/api/v1/sessions/{hidden['id']}", headers=bearer(client.app, seed.member))
    assert response.status == 404
    # No existence oracle: a hidden session and a missing one are answered alike.
    missing = await client.get("/api/v1/sessions/999999", headers=bearer(client.app, seed.member))
    assert (missing.status, await missing.json()) == (404, await response.json())


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "title", "required"),
        ({"title": "", "scheduled_start": START, "scheduled_end": END}, "title", "required"),
        ({"title": "x" * 301, "scheduled_start": START, "scheduled_end": END}, "title", "too_long"),
        ({"title": "t", "scheduled_start": "tomorrow", "scheduled_end": END}, "scheduled_start", "not_datetime"),
        ({"title": "t", "scheduled_start": "2026-12-01T08:00:00", "scheduled_end": END}, "scheduled_start",
         "timezone_required"),
        ({"title": "t", "scheduled_start": END, "scheduled_end": START}, "scheduled_end", "end_before_start"),
        ({"title": "t", "scheduled_start": START, "scheduled_end": END, "invited_point_ids": "1"},
         "invited_point_ids", "not_list"),
        ({"title": "t", "scheduled_start": START, "scheduled_end": END, "invited_point_ids": [True]},
         "invited_point_ids", "not_id_list"),
        ({"title": "t", "scheduled_start": START, "scheduled_end": END, "invited_point_ids": [424242]},
         "invited_point_ids", "unknown_point"),
        ({"title": "t", "scheduled_start": START, "scheduled_end": END, "speaker_id": "1"}, "speaker_id",
         "not_integer"),
        ({"title": "t", "scheduled_start": START, "scheduled_end": END, "colour": "red"}, "colour",
         "unknown_field"),
    ],
)
async def test_invalid_session_input_is_422_naming_the_field(client: TestClient, seed: Seed, body: dict,
                                                             field: str, code: str) -> None:
    response = await client.post("/api/v1/sessions", headers=bearer(client.app, seed.admin), json=body)
    assert response.status == 422
    payload = await response.json()
    assert error_of(payload) == "validation_failed"
    assert {"field": field, "code": code} in [{"field": e["field"], "code": e["code"]}
                                              for e in payload["error"]["details"]]


@pytest.mark.parametrize(
    ("data", "headers", "status", "code"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400, "invalid_json"),
        (b"[1, 2]", {"Content-Type": "application/json"}, 422, "validation_failed"),
        (b"\xff\xfe", {"Content-Type": "application/json"}, 400, "invalid_json"),
        (b"title=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        (b"{" + b" " * 300_000 + b"}", {"Content-Type": "application/json"}, 413, "payload_too_large"),
    ],
)
async def test_malformed_bodies_get_4xx_never_500(client: TestClient, seed: Seed, data: bytes,
                                                  headers: dict[str, str], status: int, code: str) -> None:
    response = await client.post("/api/v1/sessions", data=data, headers={**bearer(client.app, seed.admin), **headers})
    assert response.status == status
    assert error_of(await response.json()) == code


async def test_unknown_routes_and_methods_use_the_error_shape(client: TestClient, seed: Seed) -> None:
    auth = bearer(client.app, seed.admin)
    missing = await client.get("/api/v1/nothing-here", headers=auth)
    assert missing.status == 404 and error_of(await missing.json()) == "not_found"
    wrong = await client.put("/api/v1/sessions", headers=auth)
    assert wrong.status == 405 and error_of(await wrong.json()) == "method_not_allowed"
    absent = await client.get("/api/v1/sessions/99999", headers=auth)
    assert absent.status == 404 and error_of(await absent.json()) == "not_found"


async def test_units_points_and_users_crud(client: TestClient, seed: Seed) -> None:
    auth = bearer(client.app, seed.admin)
    unit = await client.post("/api/v1/units", headers=auth, json={"name": "Xã A1", "slug": "xa-a1",
                                                                   "level": "commune", "parent_id": seed.province_a.id})
    assert unit.status == 201
    unit_id = (await unit.json())["id"]
    point = await client.post("/api/v1/bridge-points", headers=auth,
                              json={"name": "Điểm cầu xã A1", "slug": "xa-a1", "unit_id": unit_id})
    assert point.status == 201
    point_id = (await point.json())["id"]
    user = await client.post("/api/v1/users", headers=auth, json={
        "username": "op-xa-a1", "full_name": "Kỹ thuật viên", "role": "operator", "unit_id": unit_id,
        "bridge_point_id": point_id, "password": "long enough"})
    assert user.status == 201, await user.text()
    assert "password" not in await user.json() and "password_hash" not in await user.json()
    in_use = await client.delete(f"/api/v1/bridge-points/{point_id}", headers=auth)
    assert in_use.status == 409
    renamed = await client.patch(f"/api/v1/units/{unit_id}", headers=auth, json={"name": "Xã A-1"})
    assert (await renamed.json())["name"] == "Xã A-1"
    listing = await client.get("/api/v1/users?role=operator", headers=auth)
    assert [u["username"] for u in (await listing.json())["users"]] == ["op-a", "op-xa-a1"]
    bad_role = await client.get("/api/v1/users?role=king", headers=auth)
    assert bad_role.status == 422


async def test_operator_without_a_point_is_refused(client: TestClient, seed: Seed) -> None:
    response = await client.post("/api/v1/users", headers=bearer(client.app, seed.admin), json={
        "username": "op-none", "full_name": "X", "role": "operator", "password": "long enough"})
    assert response.status == 422
    assert (await response.json())["error"]["details"][0]["field"] == "bridge_point_id"


async def test_password_change_by_admin_revokes_the_users_tokens(client: TestClient, seed: Seed) -> None:
    member = bearer(client.app, seed.member)
    assert (await client.get("/api/v1/me", headers=member)).status == 200
    response = await client.patch(f"/api/v1/users/{seed.member.id}", headers=bearer(client.app, seed.admin),
                                  json={"password": "brand new password"})
    assert response.status == 200
    revoked = await client.get("/api/v1/me", headers=member)
    assert revoked.status == 401
    assert error_of(await revoked.json()) == "token_revoked"


async def test_deactivation_revokes_tokens(client: TestClient, seed: Seed) -> None:
    member = bearer(client.app, seed.member)
    await client.patch(f"/api/v1/users/{seed.member.id}", headers=bearer(client.app, seed.admin),
                       json={"active": False})
    assert (await client.get("/api/v1/me", headers=member)).status == 401


async def test_the_last_admin_cannot_be_demoted(client: TestClient, seed: Seed) -> None:
    response = await client.patch(f"/api/v1/users/{seed.admin.id}", headers=bearer(client.app, seed.admin),
                                  json={"role": "member"})
    assert response.status == 409
    assert error_of(await response.json()) == "last_admin"


async def test_session_scoped_token_reaches_only_its_session(client: TestClient, seed: Seed) -> None:
    admin = bearer(client.app, seed.admin)
    created = await client.post("/api/v1/sessions", headers=admin, json={
        "title": "t", "scheduled_start": START, "scheduled_end": END, "invited_point_ids": [seed.point_a.id]})
    session_id = (await created.json())["id"]
    scoped = bearer(client.app, seed.admin, session_id=session_id)
    assert (await client.get(f"/api/v1/sessions/{session_id}", headers=scoped)).status == 200
    assert (await client.get(f"/api/v1/sessions/{session_id + 1}", headers=scoped)).status == 403
    assert (await client.get("/api/v1/users", headers=scoped)).status == 403


async def test_expired_and_forged_bearer_tokens_are_401(client: TestClient, seed: Seed) -> None:
    expired = issue_token(client.app[keys.JWT_SECRET], seed.admin.id, 1, 60, now=1_000_000)
    forged = issue_token("f" * 64, seed.admin.id, 1, 600)
    for token, code in ((expired, "token_expired"), (forged, "invalid_token")):
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert error_of(await response.json()) == code


async def test_csv_import_is_all_or_nothing_with_per_row_errors(client: TestClient, seed: Seed) -> None:
    auth = {**bearer(client.app, seed.admin), "Content-Type": "text/csv"}
    bad = ("username,full_name,email,unit,password\n"
           "tinh-a-01,Nguyễn Văn A,a@example.vn,tinh-a,long enough\n"
           "tinh-a-02,,,tinh-a,long enough\n"
           "tinh-a-01,Trùng Tên,,tinh-a,long enough\n"
           "tinh-z-01,Không Đơn Vị,,tinh-z,long enough\n"
           "tinh-a-03,Mật Khẩu Ngắn,,tinh-a,short\n")
    response = await client.post("/api/v1/users/import", data=bad.encode(), headers=auth)
    assert response.status == 422
    details = (await response.json())["error"]["details"]
    assert [(d["line"], d["field"], d["code"]) for d in details] == [
        (3, "full_name", "required"),
        (4, "username", "duplicate"),
        (5, "unit", "unknown_unit"),
        (6, "password", "too_short"),
    ]
    members = await client.get("/api/v1/users?role=member", headers=bearer(client.app, seed.admin))
    assert (await members.json())["total"] == 2  # nothing was created
    good = "username;full_name;unit;password\nTinh-A-01;Nguyễn Văn A;tinh-a;long enough\n"
    response = await client.post("/api/v1/users/import", data=good.encode("utf-8-sig"), headers=auth)
    assert response.status == 201, await response.text()
    assert (await response.json())["created"] == ["tinh-a-01"]
