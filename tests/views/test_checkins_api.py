"""Check-in through the JSON API: codes, refusals, the grace window, limits, the operator's list and corrections."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server import keys
from server.attendance.checkin import Hall
from server.auth.roles import Role
from server.live.lifecycle import SessionAction
from server.storage.models import AttendanceAudit, AttendanceRecord, Checkin, User
from tests.conftest import Seed, bearer, login
from tests.views.checkin_helpers import (  # noqa: F401 (fixtures)
    WINDOW,
    Clock,
    app,
    clock,
    error_code,
    hall_code,
    new_session,
    token_of,
)


async def check_in(client: TestClient, user: Any, code: str) -> tuple[int, dict[str, Any]]:
    response = await client.post("/api/v1/checkins", headers=bearer(client.app, user), json={"code": code})
    return response.status, await response.json()


async def add_operator(client: TestClient, seed: Seed, point: Any) -> User:
    async with client.app[keys.DATABASE].session() as db:
        user = User(username=f"op-{point.slug}", full_name="Op B", role=Role.OPERATOR, unit_id=point.unit_id,
                    bridge_point_id=point.id, password_hash=seed.operator.password_hash)
        db.add(user)
        await db.flush()
    return user


async def document(client: TestClient) -> dict[str, Any]:
    return await (await client.get("/api/v1/openapi.json")).json()


def validate(doc: dict[str, Any], name: str, body: Any) -> None:
    jsonschema.validate(body, {"$ref": f"#/components/schemas/{name}", "components": doc["components"]},
                        cls=jsonschema.Draft202012Validator)


# The hall's code ---------------------------------------------------------------------------------------

async def test_the_operator_gets_the_code_url_and_expiry(client: TestClient, seed: Seed, clock: Clock) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id, seed.point_b.id])
    shown = await hall_code(client, seed, session_id)
    assert re.fullmatch(r"\d{6}", shown["code"])
    assert shown["url"].startswith(f"http://{client.host}:{client.port}/checkin?t=c1.{session_id}.{seed.point_a.id}.")
    assert shown["window_seconds"] == WINDOW and shown["bridge_point_id"] == seed.point_a.id
    assert 0 < shown["seconds_left"] <= WINDOW and shown["checked_in"] == 0
    assert shown["rotates_at"] < shown["expires_at"]
    validate(await document(client), "CheckinCode", shown)
    # The QR image of this window, as SVG.
    svg = await client.get(shown["qr_svg"], headers=bearer(client.app, seed.operator))
    assert svg.status == 200 and svg.content_type == "image/svg+xml"
    assert (await svg.text()).startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    # Same window, same code; the next window, another.
    assert (await hall_code(client, seed, session_id))["code"] == shown["code"]
    clock.now += WINDOW
    assert (await hall_code(client, seed, session_id))["url"] != shown["url"]


async def test_only_the_operator_of_an_invited_open_hall_gets_a_code(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_b.id])
    for user, status, code in [(seed.operator, 404, "not_invited"), (seed.member, 403, "forbidden"),
                               (seed.admin, 403, "forbidden"), (seed.speaker, 403, "forbidden")]:
        response = await client.get(f"/api/v1/sessions/{session_id}/checkin-code", headers=bearer(client.app, user))
        assert (response.status, error_code(await response.json())) == (status, code), user.username
    ended = await new_session(client, seed, [seed.point_a.id], action=SessionAction.END)
    response = await client.get(f"/api/v1/sessions/{ended}/checkin-code", headers=bearer(client.app, seed.operator))
    assert (response.status, error_code(await response.json())) == (409, "session_not_open")
    response = await client.get("/api/v1/sessions/99999/checkin-code", headers=bearer(client.app, seed.operator))
    assert response.status == 404
    anonymous = await client.get(f"/api/v1/sessions/{session_id}/checkin-code")
    assert anonymous.status == 401


# Checking in ------------------------------------------------------------------------------------------------

async def test_a_member_checks_in_by_code_and_again_harmlessly(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id], action=SessionAction.START)
    shown = await hall_code(client, seed, session_id)
    status, first = await check_in(client, seed.member, shown["code"])
    assert status == 201, first
    assert first["session"]["id"] == session_id and first["bridge_point"]["id"] == seed.point_a.id
    assert first["source"] == "code" and first["created"] is True and first["checked_out_at"] is None
    validate(await document(client), "Checkin", first)
    # Again, at the same hall, by QR this time: the open one, 200.
    status, again = await check_in(client, seed.member, token_of(shown["url"]))
    assert status == 200 and again["id"] == first["id"] and again["created"] is False
    assert (await hall_code(client, seed, session_id))["checked_in"] == 1


async def test_a_typed_code_may_have_spaces_and_the_qr_token_works_too(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id])
    shown = await hall_code(client, seed, session_id)
    status, body = await check_in(client, seed.member, f"{shown['code'][:3]} {shown['code'][3:]}")
    assert status == 201 and body["source"] == "code"
    session2 = await new_session(client, seed, [seed.point_a.id])
    status, body = await check_in(client, seed.member, token_of((await hall_code(client, seed, session2))["url"]))
    assert status == 201 and body["source"] == "qr"


async def test_the_previous_code_is_accepted_for_one_more_window(client: TestClient, seed: Seed,
                                                                 clock: Clock) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id])
    shown = await hall_code(client, seed, session_id)
    clock.now += WINDOW  # the screen rotated just after the member read it
    status, _ = await check_in(client, seed.member, shown["code"])
    assert status == 201
    clock.now += WINDOW  # two windows back: refused, and said why
    for value in (shown["code"], token_of(shown["url"])):
        status, body = await check_in(client, seed.member_b, value)
        assert status == 400 and error_code(body) in ("expired_code", "wrong_code")
    status, body = await check_in(client, seed.member, token_of(shown["url"]))
    assert (status, error_code(body)) == (400, "expired_code")


async def test_checking_in_at_another_hall_closes_the_first(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id, seed.point_b.id], action=SessionAction.START)
    operator_b = await add_operator(client, seed, seed.point_b)
    status, first = await check_in(client, seed.member, (await hall_code(client, seed, session_id))["code"])
    assert status == 201
    hall_b = await hall_code(client, seed, session_id, operator_b)
    # A typed code finds only the halls of the member's own units: another hall is scanned.
    status, body = await check_in(client, seed.member, hall_b["code"])
    assert (status, error_code(body)) == (400, "wrong_code")
    status, second = await check_in(client, seed.member, token_of(hall_b["url"]))
    assert status == 201 and second["bridge_point"]["id"] == seed.point_b.id
    assert second["closed_checkin_id"] == first["id"]
    async with client.app[keys.DATABASE].session() as db:
        old = await db.get(Checkin, first["id"])
        assert old is not None and old.checked_out_at is not None
    counts = await client.get(f"/api/v1/sessions/{session_id}/checkins", headers=bearer(client.app, seed.admin))
    assert {p["bridge_point_id"]: p["checked_in"] for p in (await counts.json())["points"]} == {
        seed.point_a.id: 0, seed.point_b.id: 1}


async def test_refusals_say_why(client: TestClient, seed: Seed) -> None:
    codes = client.app[keys.CHECKIN_CODES]
    only_a = await new_session(client, seed, [seed.point_a.id])
    token_a = token_of((await hall_code(client, seed, only_a))["url"])
    # Other roles are told to use the operator's list.
    for user in (seed.operator, seed.admin, seed.speaker):
        status, body = await check_in(client, user, token_a)
        assert (status, error_code(body)) == (403, "not_member"), user.username
    # A member of another province is not expected at this session.
    status, body = await check_in(client, seed.member_b, token_a)
    assert (status, error_code(body)) == (403, "other_units")
    # A genuine token naming a hall the session does not invite.
    status, body = await check_in(client, seed.member, codes.token(Hall(only_a, seed.point_b.id), codes.window()))
    assert (status, error_code(body)) == (403, "not_invited")
    # Ended and cancelled sessions take no check-in.
    for action in (SessionAction.END, SessionAction.CANCEL):
        closed = await new_session(client, seed, [seed.point_a.id], action=action)
        status, body = await check_in(client, seed.member, codes.token(Hall(closed, seed.point_a.id), codes.window()))
        assert (status, error_code(body)) == (409, "session_not_open")
    # Not a code at all; a tampered token; a sign-in token.
    login_token = bearer(client.app, seed.member)["Authorization"].split()[1]
    for value in ("12345", "abcdef", token_a[:-3] + "xyz", login_token, "c1.1.1.1.AAAA"):
        status, body = await check_in(client, seed.member, value)
        assert (status, error_code(body)) == (400, "wrong_code"), value
    anonymous = await client.post("/api/v1/checkins", json={"code": "123456"})
    assert anonymous.status == 401


@pytest.mark.parametrize(("data", "content_type", "status", "code"), [
    (b'{"code": ', "application/json", 400, "invalid_json"),
    (b"[]", "application/json", 422, "validation_failed"),
    (b"{}", "application/json", 422, "validation_failed"),
    (b'{"code": 123456}', "application/json", 422, "validation_failed"),
    (b'{"code": "123456", "point": 1}', "application/json", 422, "validation_failed"),
    (json.dumps({"code": "1" * 1001}).encode(), "application/json", 422, "validation_failed"),
    (b"code=123456", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
])
async def test_malformed_checkin_bodies_are_4xx(client: TestClient, seed: Seed, data: bytes, content_type: str,
                                                status: int, code: str) -> None:
    headers = {**bearer(client.app, seed.member), "Content-Type": content_type}
    response = await client.post("/api/v1/checkins", data=data, headers=headers)
    assert (response.status, error_code(await response.json())) == (status, code)


async def test_wrong_codes_are_rate_limited_per_member(client: TestClient, seed: Seed, clock: Clock) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id])
    right = (await hall_code(client, seed, session_id))["code"]
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(10):
        status, body = await check_in(client, seed.member, wrong)
        assert (status, error_code(body)) == (400, "wrong_code")
    response = await client.post("/api/v1/checkins", headers=bearer(client.app, seed.member), json={"code": right})
    assert response.status == 429  # even the right code waits out the window
    assert error_code(await response.json()) == "rate_limited"
    assert 0 < int(response.headers["Retry-After"]) <= 600
    # Another member is not held back; the window slides.
    status, _ = await check_in(client, seed.member_b, wrong)
    assert status == 400
    clock.now += 601
    status, body = await check_in(client, seed.member, (await hall_code(client, seed, session_id))["code"])
    assert status == 201, body


async def test_a_browser_checks_in_with_the_csrf_header(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id])
    code = (await hall_code(client, seed, session_id))["code"]
    csrf = await login(client, "member-a")
    refused = await client.post("/api/v1/checkins", json={"code": code})
    assert (refused.status, error_code(await refused.json())) == (403, "csrf_failed")
    accepted = await client.post("/api/v1/checkins", json={"code": code}, headers={"X-CSRF-Token": csrf})
    assert accepted.status == 201


async def test_a_member_checks_out(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id], action=SessionAction.START)
    _, body = await check_in(client, seed.member, (await hall_code(client, seed, session_id))["code"])
    path = f"/api/v1/checkins/{body['id']}/checkout"
    response = await client.post(path, headers=bearer(client.app, seed.member_b))
    assert response.status == 404  # not theirs
    response = await client.post(path, headers=bearer(client.app, seed.member))
    assert response.status == 200 and (await response.json())["checked_out_at"] is not None
    again = await client.post(path, headers=bearer(client.app, seed.member))
    assert (again.status, error_code(await again.json())) == (409, "already_checked_out")
    assert (await hall_code(client, seed, session_id))["checked_in"] == 0


# The operator's list and corrections ---------------------------------------------------------------------------

async def test_lists_by_role(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id, seed.point_b.id], action=SessionAction.START)
    operator_b = await add_operator(client, seed, seed.point_b)
    await check_in(client, seed.member, (await hall_code(client, seed, session_id))["code"])
    await check_in(client, seed.member_b, (await hall_code(client, seed, session_id, operator_b))["code"])
    path = f"/api/v1/sessions/{session_id}/checkins"
    own = await (await client.get(path, headers=bearer(client.app, seed.operator))).json()
    assert [c["username"] for c in own["checkins"]] == ["member-a"]
    assert [p["bridge_point_id"] for p in own["points"]] == [seed.point_a.id]
    validate(await document(client), "CheckinList", own)
    for user in (seed.admin, seed.speaker):
        every = await (await client.get(path, headers=bearer(client.app, user))).json()
        assert sorted(c["username"] for c in every["checkins"]) == ["member-a", "member-b"]
        assert {p["bridge_point_id"]: p["checked_in"] for p in every["points"]} == {
            seed.point_a.id: 1, seed.point_b.id: 1}
    narrowed = await (await client.get(f"{path}?point_id={seed.point_b.id}",
                                       headers=bearer(client.app, seed.admin))).json()
    assert [c["username"] for c in narrowed["checkins"]] == ["member-b"]
    other = await client.get(f"{path}?point_id={seed.point_b.id}", headers=bearer(client.app, seed.operator))
    assert (other.status, error_code(await other.json())) == (403, "other_point")
    bad = await client.get(f"{path}?point_id=x", headers=bearer(client.app, seed.admin))
    assert bad.status == 422
    member = await client.get(path, headers=bearer(client.app, seed.member))
    assert member.status == 403


async def test_removal_is_limited_to_the_own_point_and_audited(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id, seed.point_b.id], action=SessionAction.START)
    operator_b = await add_operator(client, seed, seed.point_b)
    _, body = await check_in(client, seed.member, (await hall_code(client, seed, session_id))["code"])
    path = f"/api/v1/checkins/{body['id']}"
    for user, status in [(operator_b, 403), (seed.member, 403), (seed.speaker, 403)]:
        response = await client.delete(path, headers=bearer(client.app, user), json={"reason": "x"})
        assert response.status == status, user.username
    bad = await client.delete(path, headers=bearer(client.app, seed.operator), json={"reason": 5})
    assert bad.status == 422
    response = await client.delete(path, headers=bearer(client.app, seed.operator),
                                   json={"reason": "Gửi mã cho người ở nhà"})
    assert response.status == 204
    again = await client.delete(path, headers=bearer(client.app, seed.operator))
    assert (again.status, error_code(await again.json())) == (409, "already_removed")
    missing = await client.delete("/api/v1/checkins/99999", headers=bearer(client.app, seed.operator))
    assert missing.status == 404
    async with client.app[keys.DATABASE].session() as db:
        audit = (await db.scalars(select(AttendanceAudit))).all()
    assert len(audit) == 1
    row = audit[0]
    assert (row.action, row.actor_id, row.member_id, row.session_id) == (
        "checkin_removed", seed.operator.id, seed.member.id, session_id)
    assert row.reason == "Gửi mã cho người ở nhà"
    assert json.loads(row.before)["removed_at"] is None and json.loads(row.after)["removed_by_id"] == seed.operator.id
    listed = await (await client.get(f"/api/v1/sessions/{session_id}/checkins",
                                     headers=bearer(client.app, seed.operator))).json()
    assert listed["checkins"] == [] and listed["points"][0]["checked_in"] == 0
    # The member may check in again afterwards.
    status, _ = await check_in(client, seed.member, (await hall_code(client, seed, session_id))["code"])
    assert status == 201


async def test_manual_marking_is_audited_and_limited_to_the_points_members(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id, seed.point_b.id])
    path = f"/api/v1/sessions/{session_id}/checkins/manual"
    operator = bearer(client.app, seed.operator)
    early = await client.post(path, headers=operator, json={"username": "member-a", "from_start": True})
    assert (early.status, error_code(await early.json())) == (409, "not_started")
    marked = await client.post(path, headers=operator, json={"username": "member-a", "reason": "không có điện thoại"})
    assert marked.status == 201
    body = await marked.json()
    assert body["source"] == "manual" and body["bridge_point"]["id"] == seed.point_a.id
    again = await client.post(path, headers=operator, json={"user_id": seed.member.id})
    assert again.status == 200 and (await again.json())["id"] == body["id"]
    elsewhere = await client.post(path, headers=operator, json={"username": "member-b"})
    assert (elsewhere.status, error_code(await elsewhere.json())) == (403, "other_point")
    other_point = await client.post(path, headers=operator,
                                    json={"username": "member-a", "bridge_point_id": seed.point_b.id})
    assert (other_point.status, error_code(await other_point.json())) == (403, "other_point")
    for bad in ({}, {"username": "member-a", "user_id": seed.member.id}, {"username": "nobody"},
                {"username": "admin"}, {"username": "member-a", "from_start": "yes"}, {"user_id": 0}):
        response = await client.post(path, headers=operator, json=bad)
        assert response.status == 422, bad
    for user in (seed.member, seed.speaker):
        response = await client.post(path, headers=bearer(client.app, user), json={"username": "member-a"})
        assert response.status == 403
    # An admin marks at any point.
    by_admin = await client.post(path, headers=bearer(client.app, seed.admin), json={"username": "member-b"})
    assert by_admin.status == 201 and (await by_admin.json())["bridge_point"]["id"] == seed.point_b.id
    async with client.app[keys.DATABASE].session() as db:
        audit = (await db.scalars(select(AttendanceAudit).order_by(AttendanceAudit.id))).all()
        checkin = await db.get(Checkin, body["id"])
    assert [(a.action, a.actor_id, a.member_id) for a in audit] == [
        ("marked_present", seed.operator.id, seed.member.id), ("marked_present", seed.admin.id, seed.member_b.id)]
    assert audit[0].before == "null" and json.loads(audit[0].after)["source"] == "manual"
    assert audit[0].reason == "không có điện thoại"
    assert checkin is not None and checkin.recorded_by_id == seed.operator.id


async def test_marking_from_the_start_of_a_live_session(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id], action=SessionAction.START)
    response = await client.post(f"/api/v1/sessions/{session_id}/checkins/manual",
                                 headers=bearer(client.app, seed.operator),
                                 json={"username": "member-a", "from_start": True})
    assert response.status == 201
    session = await (await client.get(f"/api/v1/sessions/{session_id}", headers=bearer(client.app, seed.admin))).json()
    assert (await response.json())["checked_in_at"] == session["actual_start"]


async def test_changes_on_an_ended_session_refresh_its_records(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id], action=SessionAction.END)
    # Once ended, what was recorded counts: the operator may no longer change it ...
    operator = bearer(client.app, seed.operator)
    refused = await client.post(f"/api/v1/sessions/{session_id}/checkins/manual", headers=operator,
                                json={"username": "member-a", "from_start": True, "reason": "late paper"})
    assert (refused.status, error_code(await refused.json())) == (403, "ended_admin_only")
    # ... an administrator corrects it, with a reason.
    admin = bearer(client.app, seed.admin)
    unexplained = await client.post(f"/api/v1/sessions/{session_id}/checkins/manual", headers=admin,
                                    json={"username": "member-a", "from_start": True,
                                          "bridge_point_id": seed.point_a.id})
    assert (unexplained.status, error_code(await unexplained.json())) == (422, "validation_failed")
    marked = await client.post(f"/api/v1/sessions/{session_id}/checkins/manual", headers=admin,
                               json={"username": "member-a", "from_start": True, "bridge_point_id": seed.point_a.id,
                                     "reason": "signed the paper list"})
    assert marked.status == 201, await marked.text()
    operator = admin

    async def record() -> AttendanceRecord | None:
        async with client.app[keys.DATABASE].session() as db:
            return await db.scalar(select(AttendanceRecord).where(AttendanceRecord.session_id == session_id,
                                                                  AttendanceRecord.user_id == seed.member.id))

    kept = await record()
    assert kept is not None and kept.checked_in is True
    removed = await client.delete(f"/api/v1/checkins/{(await marked.json())['id']}", headers=operator,
                                  json={"reason": "marked by mistake"})
    assert removed.status == 204
    kept = await record()
    assert kept is not None and kept.checked_in is False


async def test_concurrent_wrong_codes_cannot_pass_the_limit_together(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id])
    right = (await hall_code(client, seed, session_id))["code"]
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    results = await asyncio.gather(*(check_in(client, seed.member, wrong) for _ in range(40)))
    statuses = sorted(status for status, _ in results)
    # Every guess is counted before it is checked: at most the limit (10) are tried, the rest wait.
    assert statuses.count(400) <= 10 and statuses.count(429) >= 30, statuses


@pytest.mark.parametrize("value", ["c1.1.1.1.\u00e9", "c1.\u00b2.1.1.abc", "\u0661\u0662\u0663\u0664\u0665\u0666",
                                   "\u00b9\u00b2\u00b3\u00b4\u00b5\u00b6", "c1.1.1.1." + "\u0000" * 5])
async def test_codes_in_other_scripts_are_wrong_codes_not_errors(client: TestClient, seed: Seed, value: str) -> None:
    await new_session(client, seed, [seed.point_a.id])
    status, body = await check_in(client, seed.member, value)
    # A wrong code, or refused by validation (control characters): a clear 4xx, never a 500.
    assert (status, error_code(body)) in ((400, "wrong_code"), (422, "validation_failed"))
    page = await client.get("/checkin", params={"t": value}, headers=bearer(client.app, seed.member))
    assert page.status < 500
