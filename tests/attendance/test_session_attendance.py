"""The per-session report through the real API, on SQLite and PostgreSQL: exact seconds, points, corrections."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from server.storage.db import Database
from server.storage.models import AttendanceAudit, AttendanceRecord
from tests.attendance.scenario import EXPECTED, LIVE, Scenario
from tests.conftest import Seed, bearer


def by_username(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["username"]: m for m in body["members"]}


async def report(client: TestClient, seed: Seed, scenario: Scenario, **query: str) -> Any:
    response = await client.get(f"/api/v1/sessions/{scenario.session_id}/attendance",
                                headers=bearer(client.app, seed.admin), params=query)
    assert response.status == 200, await response.text()
    return response


async def test_every_member_exactly_as_computed_by_hand(env: tuple[TestClient, Seed, Scenario]) -> None:
    client, seed, scenario = env
    body = await (await report(client, seed, scenario)).json()
    assert body["rule"] == {"attended_percent": 80, "late_after_minutes": 5, "early_before_minutes": 5}
    assert body["session"]["live_seconds"] == LIVE
    members = by_username(body)
    assert set(members) == set(EXPECTED)
    for username, (live, credited, status, late, early, online, hall, checked_in) in EXPECTED.items():
        m = members[username]
        got = (m["live_seconds"], m["credited_seconds"], m["status"], m["late_minutes"], m["early_minutes"],
               m["online_seconds"], m["hall_seconds"], m["checked_in"])
        assert got == (live, credited, status, late, early, online, hall, checked_in), username
        assert m["replay_seconds"] == 0
    assert members["sv-tabs"]["bridge_point"] == seed.point_a.name
    assert members["sv-late"]["bridge_point"] == seed.point_b.name
    assert members["sv-late"]["unit"] == "Tỉnh B"


async def test_per_point_figures(env: tuple[TestClient, Seed, Scenario]) -> None:
    client, seed, scenario = env
    body = await (await report(client, seed, scenario)).json()
    points = {p["name"]: p for p in body["points"]}
    a, b = points[seed.point_a.name], points[seed.point_b.name]
    assert (a["expected"], a["checked_in"], a["attended"], a["partial"], a["absent"]) == (5, 2, 3, 0, 2)
    assert a["attended_percent"] == 60.0
    assert (a["connected_seconds"], a["talk_seconds"]) == (3000, 400)
    assert (b["expected"], b["checked_in"], b["attended"], b["partial"], b["absent"]) == (5, 0, 0, 3, 2)
    assert (b["attended_percent"], b["connected_seconds"], b["talk_seconds"]) == (0.0, 0, 0)


async def test_a_correction_is_kept_audited_recorded_and_shown(env: tuple[TestClient, Seed, Scenario],
                                                               database: Database) -> None:
    client, seed, scenario = env
    url = f"/api/v1/sessions/{scenario.session_id}/attendance/corrections"
    reason = "Ngồi tại hội trường B; điểm danh QR bị lỗi"
    response = await client.post(url, headers=bearer(client.app, seed.admin),
                                 json={"username": "sv-fixed", "credited_seconds": LIVE, "reason": reason})
    assert response.status == 201, await response.text()
    row = await response.json()
    # Credited seconds alone: the rule decides the status (the whole hour is attended).
    assert (row["status"], row["credited_seconds"], row["live_seconds"]) == ("attended", LIVE, 0)
    assert row["correction"]["reason"] == reason and row["correction"]["by"] == "admin"

    body = await (await report(client, seed, scenario)).json()
    fixed = by_username(body)["sv-fixed"]
    assert (fixed["status"], fixed["credited_seconds"]) == ("attended", LIVE)
    b = {p["name"]: p for p in body["points"]}[seed.point_b.name]
    assert (b["attended"], b["partial"], b["absent"], b["attended_percent"]) == (1, 3, 1, 20.0)

    # A second correction sets the status only; the newest applies.
    response = await client.post(url, headers=bearer(client.app, seed.admin),
                                 json={"user_id": scenario.users["late"].id, "status": "attended",
                                       "reason": "Đến muộn có lý do"})
    assert (await response.json())["status"] == "attended"

    async with database.session() as db:
        audits = list(await db.scalars(select(AttendanceAudit).order_by(AttendanceAudit.id)))
        records = {r.user_id: r for r in await db.scalars(
            select(AttendanceRecord).where(AttendanceRecord.session_id == scenario.session_id))}
    assert [a.action for a in audits] == ["correction", "correction"]
    assert '"status": "absent"' in audits[0].before and '"status": "attended"' in audits[0].after
    assert audits[0].reason == reason and audits[0].actor_id == seed.admin.id
    # The session has ended: its records follow the correction at once.
    assert len(records) == len(EXPECTED)
    fixed_record = records[scenario.users["fixed"].id]
    assert (fixed_record.status, fixed_record.credited_seconds, fixed_record.corrected) == ("attended", LIVE, True)

    # The exports carry the correction.
    text = (await (await report(client, seed, scenario, format="csv")).read()).decode("utf-8-sig")
    line = next(r for r in csv.reader(io.StringIO(text)) if r and r[0] == "sv-fixed")
    assert reason in line[-1] and "admin" in line[-1]


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"username": "sv-fixed", "status": "attended"}, 422, "validation_failed"),  # no reason
    ({"username": "sv-fixed", "status": "attended", "reason": "   "}, 422, "validation_failed"),
    ({"username": "sv-fixed", "reason": "x"}, 422, "validation_failed"),  # nothing to change
    ({"username": "sv-fixed", "user_id": 1, "status": "absent", "reason": "x"}, 422, "validation_failed"),
    ({"username": "nobody", "status": "absent", "reason": "x"}, 422, "validation_failed"),
    ({"username": "sv-fixed", "status": "present", "reason": "x"}, 422, "validation_failed"),
    ({"username": "sv-fixed", "credited_seconds": -1, "reason": "x"}, 422, "validation_failed"),
    ({"username": "sv-fixed", "credited_seconds": LIVE + 1, "reason": "x"}, 422, "validation_failed"),
    ({"username": "sv-fixed", "credited_seconds": "60", "reason": "x"}, 422, "validation_failed"),
    ({"username": "admin", "status": "attended", "reason": "x"}, 422, "validation_failed"),  # not a member
    ([], 422, "validation_failed"),
])
async def test_bad_corrections_are_refused(env: tuple[TestClient, Seed, Scenario], body: Any, status: int,
                                           code: str) -> None:
    client, seed, scenario = env
    response = await client.post(f"/api/v1/sessions/{scenario.session_id}/attendance/corrections",
                                 headers=bearer(client.app, seed.admin), json=body)
    assert response.status == status, await response.text()
    assert (await response.json())["error"]["code"] == code


async def test_only_admins_correct(env: tuple[TestClient, Seed, Scenario], database: Database) -> None:
    client, seed, scenario = env
    url = f"/api/v1/sessions/{scenario.session_id}/attendance/corrections"
    body = {"username": "sv-fixed", "status": "attended", "reason": "x"}
    for user in (seed.speaker, seed.operator, seed.member):
        response = await client.post(url, headers=bearer(client.app, user), json=body)
        assert response.status == 403
    assert (await client.post(url, json=body)).status == 401
    assert (await client.post("/api/v1/sessions/999999/attendance/corrections", json=body,
                              headers=bearer(client.app, seed.admin))).status == 404
    async with database.session() as db:
        assert await db.scalar(select(func.count()).select_from(AttendanceAudit)) == 0


async def test_who_reads_the_report(env: tuple[TestClient, Seed, Scenario]) -> None:
    client, seed, scenario = env
    url = f"/api/v1/sessions/{scenario.session_id}/attendance"
    admin = await (await client.get(url, headers=bearer(client.app, seed.admin))).json()
    speaker = await client.get(url, headers=bearer(client.app, seed.speaker))
    assert speaker.status == 200
    assert len((await speaker.json())["members"]) == len(admin["members"])
    # The operator of point A: point A's row and members only.
    operator = await (await client.get(url, headers=bearer(client.app, seed.operator))).json()
    assert [p["name"] for p in operator["points"]] == [seed.point_a.name]
    assert set(by_username(operator)) == {"sv-tabs", "sv-hall", "sv-both", "sv-absent", "member-a"}
    assert (await client.get(url, headers=bearer(client.app, seed.member))).status == 403
    assert (await client.get(url)).status == 401
    assert (await client.get(url, headers=bearer(client.app, seed.admin, session_id=scenario.session_id))).status == 403
    assert (await client.get("/api/v1/sessions/999999/attendance", headers=bearer(client.app, seed.admin))).status == 404
    bad = await client.get(url, headers=bearer(client.app, seed.admin), params={"format": "pdf"})
    assert bad.status == 422 and (await bad.json())["error"]["code"] == "validation_failed"


async def test_csv_download(env: tuple[TestClient, Seed, Scenario]) -> None:
    client, seed, scenario = env
    response = await report(client, seed, scenario, format="csv")
    assert response.content_type == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith(f'attachment; filename="attendance-{scenario.session_id}-2026-12-01-')
    assert "filename*=UTF-8''" in disposition and "%E1%BB%8B" in disposition  # "ị" of "Nghị", percent-encoded
    raw = await response.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:4] == ["Tên đăng nhập", "Họ và tên", "Đơn vị", "Điểm cầu"]
    members = {r[0]: r for r in rows[1:len(EXPECTED) + 1]}
    assert set(members) == set(EXPECTED)
    assert members["sv-late"][1] == "Hoàng Văn Muộn" and members["sv-late"][2] == "Tỉnh B"
    assert members["sv-late"][4:10] == ["2700", "0", "2700", "Tham dự một phần", "15", "0"]
    # A name that starts like a formula is text.
    assert members["sv-fixed"][1] == "'=Bùi Thị Sửa"
    footer = [r[0] for r in rows[len(EXPECTED) + 1:] if r]
    assert any("80%" in line for line in footer)
    assert any(line.startswith("Hội nghị: '=") or "=chuyên đề" in line for line in footer)

