"""The roll-call board in Chromium: a hall's link graded on the console, and the dropped-point alarm, once.

Real pages against the real server: the speaker's console, and a hall's big
screen in another browser context (fake camera and microphone). The hall's
row turns green with the server's figures; when the hall's browser goes
away mid-session, the console shows the alarm banner naming it and plays
its tone, once, however many quality messages follow; the board page lists
the alarm and puts the hall first.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.conftest import Server, signed_in


async def _session(browser: Any, server: Server) -> tuple[int, int]:
    admin = await signed_in(browser, server, "admin", server.logins["admin"])
    points = (await (await admin.request.get(f"{server.url}/api/v1/bridge-points")).json())["bridge_points"]
    hall = next(point["id"] for point in points if point["slug"] == "hai-phong")
    others = [point["id"] for point in points if not point["is_hub"] and point["slug"] in ("son-la", "ha-tinh")]
    speakers = (await (await admin.request.get(f"{server.url}/api/v1/users?role=speaker")).json())["users"]
    csrf = next(c["value"] for c in await admin.context.cookies() if c["name"] == "bc_csrf")
    now = datetime.now(UTC)
    response = await admin.request.post(f"{server.url}/api/v1/sessions", headers={"X-CSRF-Token": csrf}, data={
        "title": "Kiểm thử bảng điểm danh", "speaker_id": speakers[0]["id"],
        "scheduled_start": (now - timedelta(minutes=1)).isoformat(),
        "scheduled_end": (now + timedelta(hours=1)).isoformat(), "invited_point_ids": [hall, *others]})
    assert response.ok, await response.text()
    session_id = (await response.json())["id"]
    await admin.context.close()
    return session_id, hall


async def test_a_dropped_hall_raises_one_alarm_on_the_console_and_the_board(server: Server, browser: Any) -> None:
    session_id, hall = await _session(browser, server)
    speaker = await signed_in(browser, server, "speaker", server.logins["speaker"], viewport={"width": 1500,
                                                                                                "height": 950})
    await speaker.goto(f"{server.url}/sessions/{session_id}/live")
    await speaker.wait_for_selector("#conn-state[data-state=online]")
    csrf = next(c["value"] for c in await speaker.context.cookies() if c["name"] == "bc_csrf")
    started = await speaker.request.post(f"{server.url}/api/v1/sessions/{session_id}/start",
                                         headers={"X-CSRF-Token": csrf})
    assert started.ok, await started.text()

    operator = await signed_in(browser, server, "op-hai-phong", server.logins["operators"])
    await operator.goto(f"{server.url}/sessions/{session_id}/live")
    row = f"#rollcall tr[data-point-id='{hall}']"
    # The hall receives the program: its link is graded green, with the figures the server measured.
    await speaker.wait_for_selector(f"{row}[data-q=green]", timeout=30_000)
    await speaker.wait_for_function(
        "sel => /kbit\\/s/.test(document.querySelector(sel + ' .q-figures').textContent)", arg=row, timeout=20_000)
    assert await speaker.locator(f"{row} .q-spark svg").count() == 1
    assert await speaker.locator("#quality-alarms").is_hidden()

    # The hall's browser goes away without a goodbye: the console says so at once, with a tone, once.
    await operator.context.close()
    await speaker.wait_for_selector("#quality-alarms:not([hidden])", timeout=15_000)
    banner = speaker.locator("#quality-alarms .alarm-line")
    assert await banner.count() == 1
    assert "Hải Phòng" in await banner.inner_text()
    await asyncio.sleep(4)  # four more quality messages, and the roll call's own refreshes
    assert await banner.count() == 1
    assert await speaker.evaluate("window.Bridgecast.quality.tone.played") == 1
    # The dropped hall needs attention: its row comes first.
    first = await speaker.locator("#rollcall tr[data-point-id]").first.get_attribute("data-point-id")
    assert first == str(hall)

    # The board page lists the alarm (kept) and shows the open one's banner without a tone of its own.
    board = await speaker.context.new_page()
    await board.goto(f"{server.url}/sessions/{session_id}/board")
    await board.wait_for_selector("#alarm-list li[data-alarm=dropped]")
    assert await board.locator("#quality-alarms .alarm-line").count() == 1
    assert (await board.locator("#board-rows tr[data-point-id]").first.get_attribute("data-point-id")) == str(hall)
    assert await board.evaluate("window.Bridgecast.quality.tone.played || 0") == 0
    await speaker.context.close()
