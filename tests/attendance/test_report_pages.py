"""The report pages: what they show, who may open them, and the correction form."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.attendance.scenario import Scenario
from tests.conftest import Seed, login


async def test_the_session_report_page(env: tuple[TestClient, Seed, Scenario]) -> None:
    client, seed, scenario = env
    await login(client, "admin")
    page = await client.get(f"/sessions/{scenario.session_id}/attendance")
    html = await page.text()
    assert page.status == 200
    for text in ("Hoàng Văn Muộn", "Điểm cầu A", "0:50:00", "Quy tắc tính", "80%", "format=xlsx", "15 phút"):
        assert text in html, text
    filtered = await (await client.get(f"/sessions/{scenario.session_id}/attendance?status=partial")).text()
    assert "Hoàng Văn Muộn" in filtered and "Nguyễn Văn Tab" not in filtered
    detail = await (await client.get(f"/sessions/{scenario.session_id}")).text()
    assert f"/sessions/{scenario.session_id}/attendance" in detail
    assert 'href="/reports/units"' in detail  # in the admin's menu


async def test_the_correction_form(env: tuple[TestClient, Seed, Scenario]) -> None:
    client, seed, scenario = env
    csrf = await login(client, "admin")
    url = f"/sessions/{scenario.session_id}/attendance/corrections"
    bad = await client.post(url, data={"csrf_token": csrf, "username": "sv-fixed", "credited_minutes": "61",
                                       "reason": "Ngồi tại hội trường"})
    assert bad.status == 422
    assert "Số này quá lớn." in await bad.text()
    empty = await client.post(url, data={"csrf_token": csrf, "username": "sv-fixed", "reason": "x"})
    assert empty.status == 422
    done = await client.post(url, data={"csrf_token": csrf, "username": "sv-fixed", "status": "attended",
                                        "credited_minutes": "55", "reason": "Ngồi tại hội trường B"},
                             allow_redirects=False)
    assert done.status == 303
    html = await (await client.get(done.headers["Location"])).text()
    assert "Ngồi tại hội trường B" in html and "đã điều chỉnh" in html and "0:55:00" in html


async def test_pages_refuse_who_may_not_read(env: tuple[TestClient, Seed, Scenario]) -> None:
    client, seed, scenario = env
    csrf = await login(client, "member-a")
    assert (await client.get(f"/sessions/{scenario.session_id}/attendance")).status == 403
    assert (await client.get("/reports/units")).status == 403
    assert (await client.get(f"/users/{scenario.users['tabs'].id}/attendance")).status == 403
    own = await client.get(f"/users/{seed.member.id}/attendance")
    assert own.status == 200 and "Lịch sử tham dự" in await own.text()
    post = await client.post(f"/sessions/{scenario.session_id}/attendance/corrections",
                             data={"csrf_token": csrf, "username": "sv-fixed", "status": "attended", "reason": "x"})
    assert post.status == 403


async def test_the_unit_report_page(env: tuple[TestClient, Seed, Scenario]) -> None:
    client, seed, scenario = env
    await login(client, "admin")
    page = await client.get("/reports/units?from=2026-12-01&to=2026-12-31")
    html = await page.text()
    assert page.status == 200
    assert "Tỉnh A" in html and "60.0 %" in html and "<svg" in html and "Quy tắc tính" in html
    bad = await client.get("/reports/units?from=2026-12-31&to=2026-12-01")
    assert bad.status == 422 and "Trung ương" in await bad.text()
    assert (await client.get("/reports/units?unit=999999")).status == 422
    assert (await client.get("/reports/units?unit=abc")).status == 422


async def test_an_operator_sees_their_own_point(env: tuple[TestClient, Seed, Scenario]) -> None:
    client, seed, scenario = env
    await login(client, "op-a")
    html = await (await client.get(f"/sessions/{scenario.session_id}/attendance")).text()
    assert "Nguyễn Văn Tab" in html and "Hoàng Văn Muộn" not in html
    assert "Sửa kết quả của học viên" not in html
    assert (await client.get(f"/reports/units?unit={seed.province_a.id}")).status == 200
    assert (await client.get(f"/reports/units?unit={seed.province_b.id}")).status == 403
