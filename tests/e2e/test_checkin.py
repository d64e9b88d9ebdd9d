"""A member checks in with a phone from the hall screen's QR link, and the operator and the speaker see it.

Nothing is decoded: the phone opens the link the hall page carries in its
DOM (the same link its QR code shows), signs in on the way, and is checked
in; the hall's count, the operator's list and the speaker's roll call follow.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.conftest import Server, signed_in

PHONE = {"width": 390, "height": 844}
MEMBER = "hai-phong-01"


async def _csrf(page: Any) -> str:
    cookies = await page.context.cookies()
    return next(c["value"] for c in cookies if c["name"] == "bc_csrf")


async def _new_session(admin: Any, server: Server) -> tuple[int, int]:
    """A session of our own (other tests end the demo one), inviting Hải Phòng; (session id, point id)."""
    points = (await (await admin.request.get(f"{server.url}/api/v1/bridge-points")).json())["bridge_points"]
    point = next(p for p in points if p["slug"] == "hai-phong")
    speakers = (await (await admin.request.get(f"{server.url}/api/v1/users?role=speaker")).json())["users"]
    speaker = next(u for u in speakers if u["username"] == "speaker")
    now = datetime.now(UTC)
    response = await admin.request.post(f"{server.url}/api/v1/sessions", headers={"X-CSRF-Token": await _csrf(admin)},
                                        data={"title": "Điểm danh thử", "speaker_id": speaker["id"],
                                              "scheduled_start": now.isoformat(),
                                              "scheduled_end": (now + timedelta(hours=2)).isoformat(),
                                              "invited_point_ids": [point["id"]]})
    assert response.status == 201, await response.text()
    return (await response.json())["id"], point["id"]


async def test_a_member_checks_in_from_the_hall_screen(server: Server, browser: Any) -> None:
    admin = await signed_in(browser, server, "admin", server.logins["admin"])
    session_id, point_id = await _new_session(admin, server)
    hall = await signed_in(browser, server, "op-hai-phong", server.logins["operators"])
    speaker = await signed_in(browser, server, "speaker", server.logins["speaker"], {"width": 1366, "height": 768})
    live = f"{server.url}/sessions/{session_id}/live"
    await hall.goto(live)
    await speaker.goto(live)

    # The hall shows the QR (a loaded picture) and the code.
    await hall.wait_for_function("() => { const i = document.getElementById('checkin-qr');"
                                 " return i && i.complete && i.naturalWidth > 0; }")
    code = await hall.get_attribute("#checkin-code", "data-code")
    assert code is not None and len(code) == 6 and code.isdigit()
    link = await hall.get_attribute("#checkin-panel", "data-url")
    assert link is not None and link.startswith(f"{server.url}/checkin?t=")
    assert await hall.text_content("#checkin-count") == "0"

    # A phone, not signed in, opens the link: sign-in first, then checked in by itself.
    context = await browser.new_context(viewport=PHONE, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh",
                                        is_mobile=True, has_touch=True)
    phone = await context.new_page()
    phone.set_default_timeout(15_000)
    await phone.goto(link)
    await phone.wait_for_url(f"{server.url}/login?next=/checkin")
    await phone.fill("input[name=username]", MEMBER)
    await phone.fill("input[name=password]", server.logins["members"])
    await phone.click("form[action='/login'] button[type=submit]")
    await phone.wait_for_url(f"{server.url}/checkin?done=in")
    done = phone.locator(".checkin-done")
    assert "Đã điểm danh" in await done.locator(".checkin-ok").inner_text()
    assert await done.locator(".checkin-hall").inner_text() == "Điểm cầu Hải Phòng"
    assert await phone.locator("form[action$='/checkout'] button").is_visible()
    # Phone-sized: nothing wider than the screen.
    assert await phone.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]

    # The hall's count follows; the operator's list names the member; the speaker's roll call counts them.
    await hall.wait_for_function("() => document.getElementById('checkin-count').textContent === '1'",
                                 timeout=15_000)
    listing = await hall.context.new_page()
    await listing.goto(f"{server.url}/sessions/{session_id}/checkins")
    row = listing.locator(f"#checkin-list tr[data-username='{MEMBER}']")
    assert await row.count() == 1
    assert "Mã QR" in await row.inner_text()
    await speaker.wait_for_function(
        "(id) => { const n = document.querySelector(`#rollcall tr[data-point-id='${id}'] .rc-checked-n`);"
        " return n && n.textContent === '1'; }", arg=point_id, timeout=15_000)

    # The member checks out from the phone; the hall's count goes back.
    await phone.click("form[action$='/checkout'] button")
    await phone.wait_for_url(f"{server.url}/checkin?done=out")
    await hall.wait_for_function("() => document.getElementById('checkin-count').textContent === '0'",
                                 timeout=15_000)
    await context.close()
    for page in (admin, hall, speaker):
        await page.context.close()
