"""A live session through the real pages: the speaker goes live, two halls watch, one is given the floor.

Browser contexts of headless Chromium with fake cameras and microphones,
against a real server with media on loopback.  The speaker's fake camera is
Chromium's green test pattern; hall 1 runs in a second Chromium whose fake
camera is solid red, so hall 2's screen proves by its pixels which picture is
on air.  "Playing" means a decoded picture whose time advances.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from server.storage.demo import SESSION_TITLE
from tests.e2e.conftest import Server, signed_in

# The program <video> has a picture and its time moves on over two seconds.
PLAYS = """async (selector) => {
  const video = document.querySelector(selector);
  if (!video || video.videoWidth === 0) return false;
  const start = video.currentTime;
  await new Promise((resolve) => setTimeout(resolve, 2000));
  return video.videoWidth > 0 && !video.paused && video.currentTime > start + 1;
}"""


async def _demo_session_id(page: Any, server: Server) -> int:
    response = await page.request.get(f"{server.url}/api/v1/sessions?status=scheduled")
    assert response.ok
    sessions = [s for s in (await response.json())["sessions"] if s["title"] == SESSION_TITLE]
    assert sessions, "the demo session is not scheduled"
    return sessions[0]["id"]


async def _plays(page: Any) -> bool:
    return bool(await page.evaluate(PLAYS, "#program"))


# Whether the program picture, left of centre (background in Chromium's green
# pattern, away from its moving shape and text), is red (arg true) or green.
SHOWS_RED = "(p) => { const v = document.querySelector('#program'); if (!v || !v.videoWidth) return false; " \
            "const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight; " \
            "const g = c.getContext('2d'); g.drawImage(v, 0, 0); " \
            "const d = g.getImageData(Math.floor(c.width * 0.2), Math.floor(c.height * 0.55), 1, 1).data; " \
            "return p ? (d[0] > 150 && d[1] < 100) : (d[1] > 100 && d[0] < 100); }"


async def _shows(page: Any, red: bool) -> None:
    await page.wait_for_function(SHOWS_RED, arg=red, timeout=15_000)


async def test_speaker_goes_live_and_gives_a_hall_the_floor(server: Server, browser: Any,
                                                            red_camera_browser: Any) -> None:
    # The speaker's computer is set to another zone than the server's: times must still read in the server's.
    speaker = await signed_in(browser, server, "speaker", server.logins["speaker"], {"width": 1366, "height": 768},
                               timezone="America/New_York")
    hall1 = await signed_in(red_camera_browser, server, "op-hai-phong", server.logins["operators"],
                             {"width": 1280, "height": 720})
    hall2 = await signed_in(browser, server, "op-can-tho", server.logins["operators"], {"width": 1280, "height": 720})
    member = await signed_in(browser, server, "can-tho-01", server.logins["members"], {"width": 1024, "height": 700})
    session_id = await _demo_session_id(speaker, server)
    live = f"{server.url}/sessions/{session_id}/live"

    # The session page leads to the live room.
    await speaker.goto(f"{server.url}/sessions/{session_id}")
    await speaker.click(f"a[href='/sessions/{session_id}/live']")
    await speaker.wait_for_url(live)
    await asyncio.gather(hall1.goto(live), hall2.goto(live), member.goto(live))

    # Each page is its role's page; the halls wait with their connection test.
    assert await speaker.locator("#rollcall tr[data-point-id]").count() == 9
    for hall in (hall1, hall2):
        assert await hall.locator("#waiting").is_visible()
        await hall.wait_for_selector("#check-ws[data-ok=yes]")
        await hall.wait_for_selector("#check-rtt[data-ok=yes]")
    point1 = await hall1.evaluate("() => JSON.parse(document.getElementById('live-config').textContent).pointId")
    point2 = await hall2.evaluate("() => JSON.parse(document.getElementById('live-config').textContent).pointId")
    for point in (point1, point2):
        await speaker.wait_for_selector(f"#rollcall tr[data-point-id='{point}']:not([data-state=not_connected])")

    # Go live: the demo session is scheduled for tomorrow, so the console asks first, saying when.
    await speaker.click("#go-live")
    dialog = speaker.locator("#start-dialog[data-when=early]")
    await dialog.wait_for()
    assert "08:00" in await dialog.inner_text()
    await speaker.click("#confirm-start")
    # Both halls see and hear the program.
    await speaker.wait_for_function("() => document.body.dataset.status === 'live'")
    for hall in (hall1, hall2, member):
        await hall.wait_for_function("() => document.querySelector('#program').videoWidth > 0", timeout=20_000)
        assert await _plays(hall)
        assert await hall.locator("#waiting").is_hidden()
    for point in (point1, point2):
        await speaker.wait_for_selector(f"#rollcall tr[data-point-id='{point}'][data-state=receiving]")
    await speaker.wait_for_function("() => document.querySelector('#on-air').dataset.onAir.startsWith('user:')")
    await _shows(hall2, red=False)  # the speaker's green picture

    # Hall 1 raises its hand; the console shows it in the roll call and the queue.
    await hall1.click("#raise-hand")
    await hall1.wait_for_selector("#raise-hand[data-hand=up]")
    await speaker.wait_for_selector(f"#rollcall tr[data-point-id='{point1}'] .hand-badge:not([hidden])")
    grant = speaker.locator(f"#hand-queue [data-grant='{point1}']")
    await grant.wait_for()
    assert "Hải Phòng" in await speaker.inner_text("#hand-queue")

    # The speaker gives hall 1 the floor (5 minutes): it publishes its camera.
    await speaker.select_option("#grant-limit", "300")
    await grant.click()
    await hall1.wait_for_selector("#stage[data-floor=self]")
    assert await hall1.locator("#floor-frame").is_visible()
    await hall1.wait_for_selector("#floor-frame[data-pc=connected]", timeout=20_000)
    assert await hall1.get_attribute("#raise-hand", "data-hand") == "floor"
    await hall1.wait_for_function("() => document.querySelector('#floor-preview').videoWidth > 0")

    # Everyone is told: the console's floor panel and roll call, hall 2's bar,
    # and the program switches to hall 1's picture while hall 2 keeps playing.
    await speaker.wait_for_selector(f"#floor-panel[data-holder='{point1}']")
    await speaker.wait_for_selector(f"#rollcall tr[data-point-id='{point1}'][data-state=floor]")
    assert "Hải Phòng" in await speaker.inner_text("#floor-name")
    assert "Còn" in await speaker.inner_text("#floor-remaining")  # the 5-minute limit counts down
    await hall2.wait_for_function("() => document.querySelector('#bar-floor').textContent.includes('Hải Phòng')")
    await speaker.wait_for_selector(f"#on-air[data-on-air='point:{point1}']", timeout=15_000)
    await _shows(hall2, red=True)  # hall 2 now shows hall 1's red camera
    assert await _plays(hall2)
    # A member at home sees it too, and is told who speaks.
    await _shows(member, red=True)
    await member.wait_for_function("() => document.querySelector('#floor-line').textContent.includes('Hải Phòng')")

    # The member's question reaches the console, its time in the configured zone (not New York's).
    await member.fill("#question-text", "Xin làm rõ mục 3?")
    await member.click("#question-form button[type=submit]")
    asked = speaker.locator("#questions .question", has_text="Xin làm rõ mục 3?")
    await asked.wait_for()
    sent_at = datetime.fromisoformat(await asked.locator(".question-at").get_attribute("datetime"))
    expected = sent_at.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%H:%M")
    assert (await asked.locator(".question-at").inner_text()).strip() == expected

    # A blip: hall 1's screen leaves the live page while it holds the floor and comes back a moment later.
    # Meanwhile the console shows it reconnecting, still holding the floor; back, it publishes again, and the
    # floor never ended.
    await hall1.goto(f"{server.url}/")
    await speaker.wait_for_selector(f"#floor-panel[data-holder='{point1}'][data-reconnecting=true]")
    await speaker.wait_for_selector(f"#rollcall tr[data-point-id='{point1}'][data-state=reconnecting]",
                                    state="attached")
    await hall1.goto(live)
    await hall1.wait_for_selector("#stage[data-floor=self]")
    await hall1.wait_for_selector("#floor-frame[data-pc=connected]", timeout=20_000)
    await speaker.wait_for_selector(f"#rollcall tr[data-point-id='{point1}'][data-state=floor]")
    await speaker.wait_for_selector(f"#floor-panel[data-holder='{point1}'][data-reconnecting=false]")
    await speaker.wait_for_selector(f"#on-air[data-on-air='point:{point1}']", timeout=15_000)
    await _shows(hall2, red=True)
    # A plain reload (the new socket may even arrive before the old one is gone) keeps it too.
    await hall1.reload()
    await hall1.wait_for_selector("#floor-frame[data-pc=connected]", timeout=20_000)
    await _shows(hall2, red=True)
    assert await speaker.locator("#floor-alerts .floor-alert").count() == 0
    assert await speaker.get_attribute("#floor-panel", "data-holder") == f"{point1}"

    # The speaker takes the floor back: hall 1 stops publishing, the program returns to the speaker.
    await speaker.click("#revoke-floor")
    await hall1.wait_for_selector("#stage[data-floor=none]")
    assert await hall1.locator("#floor-frame").is_hidden()
    assert await hall1.get_attribute("#raise-hand", "data-hand") == "down"
    await speaker.wait_for_selector("#floor-panel[data-holder='']")
    await speaker.wait_for_selector(f"#rollcall tr[data-point-id='{point1}'][data-state=receiving]")
    await hall2.wait_for_function("() => !document.querySelector('#bar-floor').textContent.includes('Hải Phòng')")
    await speaker.wait_for_selector("#on-air[data-on-air^='user:']", timeout=15_000)
    await _shows(hall2, red=False)
    assert await _plays(hall2)
    assert await _plays(hall1)

    # End the session (confirmed in a dialog): every page says so.
    await speaker.click("#end-session")
    await speaker.click("#confirm-end")
    for page in (speaker, hall1, hall2, member):
        await page.wait_for_selector("#ended-screen:not([hidden]), #ended:not([hidden])")
    for page in (speaker, hall1, hall2, member):
        await page.context.close()
