"""A member's history and a unit's figures rolled up the hierarchy, through the API, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.auth.roles import Role
from server.live.lifecycle import SessionStatus
from server.storage.db import Database
from server.storage.models import AttendanceRecord, Session, Unit, UnitLevel, User
from tests.attendance.scenario import LIVE, Scenario
from tests.conftest import Seed, bearer

PERIOD = {"from": "2026-12-01", "to": "2026-12-31"}


async def add_commune_session(database: Database, seed: Seed, password_hash: str) -> tuple[Unit, User]:
    """A commune under Tỉnh A, and a second ended session a week later whose records are already kept."""
    async with database.session() as db:
        commune = Unit(name="Xã An Bình", slug="xa-an-binh", level=UnitLevel.COMMUNE, parent_id=seed.province_a.id)
        db.add(commune)
        await db.flush()
        member = User(username="sv-xa", full_name="Đỗ Văn Xã", role=Role.MEMBER, unit_id=commune.id,
                      password_hash=password_hash)
        start = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)
        session = Session(title="Chuyên đề 2", scheduled_start=start, scheduled_end=start.replace(hour=3),
                          actual_start=start, actual_end=start.replace(hour=2), status=SessionStatus.ENDED)
        db.add_all([member, session])
        await db.flush()
        db.add(AttendanceRecord(session_id=session.id, user_id=member.id, unit_id=commune.id, live_seconds=LIVE,
                                credited_seconds=LIVE, status="attended"))
    return commune, member


async def get(client: TestClient, user: User | None, path: str, **query: str) -> Any:
    headers = bearer(client.app, user) if user is not None else {}
    return await client.get(path, headers=headers, params=query)


async def test_a_unit_rolls_up_its_communes_and_provinces(env: tuple[TestClient, Seed, Scenario],
                                                         database: Database, password_hash: str) -> None:
    client, seed, scenario = env
    commune, _ = await add_commune_session(database, seed, password_hash)
    # sv-xa was expected in the first session too (their commune is under Tỉnh A): absent there.
    # The centre: one row per province, each with its communes inside.
    body = await (await get(client, seed.admin, f"/api/v1/units/{seed.central.id}/attendance", **PERIOD)).json()
    rows = {r["name"]: r for r in body["rows"]}
    assert list(rows) == ["Tỉnh A", "Tỉnh B"]  # the centre's own staff are not members: no row of its own
    a, b = rows["Tỉnh A"], rows["Tỉnh B"]
    assert (a["sessions"], a["member_sessions"], a["attended"], a["partial"], a["absent"]) == (2, 7, 4, 0, 3)
    assert a["credited_seconds"] == 3000 + 3000 + 3600 + LIVE and a["attended_percent"] == 57.1
    assert (b["sessions"], b["member_sessions"], b["attended"], b["partial"], b["absent"]) == (1, 5, 0, 3, 2)
    assert b["credited_seconds"] == 2700 + 2400 + 1800 and b["credited_hours"] == 1.9
    total = body["total"]
    assert (total["sessions"], total["member_sessions"], total["attended"], total["attended_percent"]) == (2, 12, 4, 33.3)
    # The province: its commune, then its own members.
    body = await (await get(client, seed.admin, f"/api/v1/units/{seed.province_a.id}/attendance", **PERIOD)).json()
    assert [(r["name"], r["own"], r["member_sessions"], r["attended"]) for r in body["rows"]] == [
        ("Xã An Bình", False, 2, 1), ("Tỉnh A", True, 5, 3)]
    assert body["unit"]["parent_id"] == seed.central.id
    # The period decides: only the first week.
    body = await (await get(client, seed.admin, f"/api/v1/units/{seed.province_a.id}/attendance",
                            **{"from": "2026-12-01", "to": "2026-12-07"})).json()
    assert body["total"]["member_sessions"] == 6 and body["total"]["sessions"] == 1
    # A commune reads its own members only.
    body = await (await get(client, seed.admin, f"/api/v1/units/{commune.id}/attendance", **PERIOD)).json()
    assert (body["total"]["member_sessions"], body["total"]["attended"]) == (2, 1)


async def test_who_reads_a_unit(env: tuple[TestClient, Seed, Scenario]) -> None:
    client, seed, _ = env
    url = "/api/v1/units/{}/attendance"
    assert (await get(client, seed.operator, url.format(seed.province_a.id), **PERIOD)).status == 200
    for user, unit in ((seed.operator, seed.central), (seed.operator, seed.province_b), (seed.member, seed.province_a),
                       (seed.speaker, seed.province_a)):
        assert (await get(client, user, url.format(unit.id), **PERIOD)).status == 403
    assert (await get(client, None, url.format(seed.central.id))).status == 401


@pytest.mark.parametrize(("query", "field"), [
    ({"from": "2026-13-01"}, "from"), ({"from": "01/12/2026"}, "from"), ({"to": "2026-02-30"}, "to"),
    ({"from": "2026-12-31", "to": "2026-12-01"}, "to"), ({"from": "2020-01-01", "to": "2026-12-31"}, "to"),
    ({"from": "1999-01-01"}, "from"), ({"from": "２０２６-01-01"}, "from"),
])
async def test_bad_periods_are_refused(env: tuple[TestClient, Seed, Scenario], query: dict[str, str],
                                       field: str) -> None:
    client, seed, _ = env
    response = await get(client, seed.admin, f"/api/v1/units/{seed.central.id}/attendance", **query)
    assert response.status == 422
    assert (await response.json())["error"]["details"][0]["field"] == field


async def test_an_unknown_unit_is_404(env: tuple[TestClient, Seed, Scenario]) -> None:
    client, seed, _ = env
    assert (await get(client, seed.admin, "/api/v1/units/999999/attendance")).status == 404


async def test_a_members_history(env: tuple[TestClient, Seed, Scenario]) -> None:
    client, seed, scenario = env
    late = scenario.users["late"]
    body = await (await get(client, seed.admin, f"/api/v1/users/{late.id}/attendance")).json()
    assert body["user"]["username"] == "sv-late" and body["rule"]["attended_percent"] == 80
    assert body["totals"] == {"sessions": 1, "attended": 0, "partial": 1, "absent": 0, "credited_seconds": 2700}
    [row] = body["sessions"]
    assert (row["session_id"], row["status"], row["live_seconds"], row["late_minutes"]) == (
        scenario.session_id, "partial", 2700, 15)
    assert row["bridge_point"] == seed.point_b.name


async def test_who_reads_a_members_history(env: tuple[TestClient, Seed, Scenario]) -> None:
    client, seed, scenario = env
    url = "/api/v1/users/{}/attendance"
    assert (await get(client, seed.member, url.format(seed.member.id))).status == 200  # their own
    assert (await get(client, seed.member, url.format(scenario.users["tabs"].id))).status == 403
    assert (await get(client, seed.operator, url.format(scenario.users["tabs"].id))).status == 200  # Tỉnh A
    assert (await get(client, seed.operator, url.format(scenario.users["late"].id))).status == 403  # Tỉnh B
    assert (await get(client, seed.speaker, url.format(scenario.users["late"].id))).status == 403
    assert (await get(client, None, url.format(seed.member.id))).status == 401
    assert (await get(client, seed.admin, url.format(999999))).status == 404
