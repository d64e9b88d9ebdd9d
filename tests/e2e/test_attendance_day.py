"""The issue's "done when", as an administrator lives it: members check in from phone-sized windows,
others watch online, the session runs and ends, and the downloaded workbook has the right minutes for
every member, absent ones included, with the per-point sheet a province is judged by."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import openpyxl

from server.attendance.export import MEMBER_COLUMNS
from tests.e2e.conftest import Server, api_post, signed_in

PHONE = {"width": 390, "height": 844}
IN_HALL = ("hai-phong-01", "hai-phong-02")
ONLINE = "can-tho-05"
LIVE_SECONDS = 12


async def test_a_day_of_attendance_from_phones_and_online_to_the_workbook(server: Server, browser: Any) -> None:
    admin = await signed_in(browser, server, "admin", server.logins["admin"], {"width": 1366, "height": 768})
    points = (await (await admin.request.get(f"{server.url}/api/v1/bridge-points")).json())["bridge_points"]
    invited = [p for p in points if p["slug"] in ("hai-phong", "can-tho")]
    speakers = (await (await admin.request.get(f"{server.url}/api/v1/users?role=speaker")).json())["users"]
    now = datetime.now(UTC)
    created = await api_post(admin, server, "/api/v1/sessions", {
        "title": "Ngày điểm danh", "speaker_id": speakers[0]["id"], "scheduled_start": now.isoformat(),
        "scheduled_end": (now + timedelta(hours=1)).isoformat(), "invited_point_ids": [p["id"] for p in invited]})
    session_id = (await created.json())["id"]
    live = f"{server.url}/sessions/{session_id}/live"

    halls = [await signed_in(browser, server, f"op-{slug}", server.logins["operators"]) for slug in
             ("hai-phong", "can-tho")]
    for hall in halls:
        await hall.goto(live)
    hai_phong = halls[0]
    await hai_phong.wait_for_function("() => document.getElementById('checkin-panel')?.dataset.url")

    # Two members check in from their phones before the session goes live.
    phones = []
    for username in IN_HALL:
        link = await hai_phong.get_attribute("#checkin-panel", "data-url")
        context = await browser.new_context(viewport=PHONE, locale="vi-VN", is_mobile=True, has_touch=True)
        phone = await context.new_page()
        phone.set_default_timeout(15_000)
        await phone.goto(link)
        await phone.fill("input[name=username]", username)
        await phone.fill("input[name=password]", server.logins["members"])
        await phone.click("form[action='/login'] button[type=submit]")
        await phone.wait_for_url(f"{server.url}/checkin?done=in")
        phones.append(phone)
    await hai_phong.wait_for_function("() => document.getElementById('checkin-count').textContent === '2'",
                                      timeout=15_000)
    # Another watches online, alone.
    member = await signed_in(browser, server, ONLINE, server.logins["members"])
    await member.goto(live)
    await member.wait_for_function("() => document.querySelector('video')?.srcObject")

    speaker = await signed_in(browser, server, "speaker", server.logins["speaker"], {"width": 1366, "height": 768})
    await api_post(speaker, server, f"/api/v1/sessions/{session_id}/start")
    began = time.monotonic()
    await asyncio.sleep(LIVE_SECONDS)
    await api_post(speaker, server, f"/api/v1/sessions/{session_id}/end")
    live_seconds = time.monotonic() - began

    # The administrator downloads the workbook (the records are written just after the end).
    await asyncio.sleep(2)
    response = await admin.request.get(f"{server.url}/api/v1/sessions/{session_id}/attendance?format=xlsx")
    assert response.ok and response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    book = openpyxl.load_workbook(io.BytesIO(await response.body()))
    members = book.worksheets[0]
    keys = [column.key for column in MEMBER_COLUMNS]
    rows = {row[0]: dict(zip(keys, row)) for row in members.iter_rows(min_row=2, values_only=True)}
    # Every expected member is a row: both provinces' 20 members.
    assert len(rows) == 40 and all(f"{slug}-{i:02d}" in rows for slug in ("hai-phong", "can-tho")
                                   for i in range(1, 21))
    for username in (*IN_HALL, ONLINE):
        row = rows[username]
        # Present the whole live time (in the hall from before it began, or online): attended.
        assert abs(row["credited_seconds"] - live_seconds) <= 2.5, (username, row, live_seconds)
        assert row["status"] == "Có mặt" and row["late_minutes"] == 0, row
    assert rows[IN_HALL[0]]["hall_seconds"] > 0 and rows[ONLINE]["online_seconds"] > 0
    absent = [u for u in rows if u not in (*IN_HALL, ONLINE)]
    assert all(rows[u]["status"] == "Vắng mặt" and rows[u]["credited_seconds"] == 0 for u in absent)

    summary = {row[0]: row for row in book["Điểm cầu - Points"].iter_rows(min_row=2, values_only=True)}
    hp = next(row for name, row in summary.items() if "Hải Phòng" in name)
    ct = next(row for name, row in summary.items() if "Cần Thơ" in name)
    assert hp[2:7] == (20, 2, 2, 0, 18) and ct[2:7] == (20, 0, 1, 0, 19)

    # What the administrator sees on the page.
    await admin.goto(f"{server.url}/sessions/{session_id}/attendance")
    assert "Hải Phòng" in await admin.inner_text("main")
    for page in (admin, speaker, member, *halls, *phones):
        await page.context.close()
