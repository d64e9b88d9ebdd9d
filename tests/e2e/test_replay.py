"""The archive as a member lives it: a session runs with a floor change and ends; within seconds its
recording is in the library; the replay page plays and seeks in Chromium, resumes where the member left
off, and what they watched reaches the server and the attendance report; the MP4 follows and plays too."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.conftest import Server, api_post, signed_in

MEMBER = "can-tho-03"


async def _current(page: Any) -> float:
    return float(await page.evaluate("() => document.getElementById('player').currentTime"))


async def test_a_recording_is_replayed_seeks_resumes_and_counts(server: Server, browser: Any,
                                                                red_camera_browser: Any) -> None:
    admin = await signed_in(browser, server, "admin", server.logins["admin"], {"width": 1366, "height": 768})
    points = (await (await admin.request.get(f"{server.url}/api/v1/bridge-points")).json())["bridge_points"]
    invited = [p for p in points if p["slug"] in ("hai-phong", "can-tho")]
    speakers = (await (await admin.request.get(f"{server.url}/api/v1/users?role=speaker")).json())["users"]
    now = datetime.now(UTC)
    created = await api_post(admin, server, "/api/v1/sessions", {
        "title": "Ôn tập nghị quyết — bản ghi", "speaker_id": speakers[0]["id"], "scheduled_start": now.isoformat(),
        "scheduled_end": (now + timedelta(hours=1)).isoformat(), "invited_point_ids": [p["id"] for p in invited]})
    session_id = (await created.json())["id"]
    live = f"{server.url}/sessions/{session_id}/live"

    # The speaker's console publishes the camera; Hải Phòng's hall (a red camera) will take the floor.
    speaker = await signed_in(browser, server, "speaker", server.logins["speaker"], {"width": 1366, "height": 768})
    hall = await signed_in(red_camera_browser, server, "op-hai-phong", server.logins["operators"])
    await asyncio.gather(speaker.goto(live), hall.goto(live))
    await hall.wait_for_selector("#check-ws[data-ok=yes]")
    await api_post(speaker, server, f"/api/v1/sessions/{session_id}/start")
    await speaker.wait_for_function("() => document.body.dataset.status === 'live'")
    await speaker.wait_for_selector("#on-air[data-on-air^='user:']", timeout=20_000)
    await asyncio.sleep(4)
    await hall.click("#raise-hand")
    point = next(p["id"] for p in invited if p["slug"] == "hai-phong")
    await speaker.locator(f"#hand-queue [data-grant='{point}']").click()
    await speaker.wait_for_selector(f"#on-air[data-on-air='point:{point}']", timeout=20_000)
    await asyncio.sleep(10)
    await api_post(speaker, server, f"/api/v1/sessions/{session_id}/end")
    ended = time.monotonic()

    # Within seconds it is in the library, newest first, for a member of an invited unit.
    member = await signed_in(browser, server, MEMBER, server.logins["members"], {"width": 1280, "height": 800})
    while True:
        listed = (await (await member.request.get(f"{server.url}/api/v1/sessions/{session_id}/recordings")).json())
        if listed["recordings"] and listed["recordings"][0]["status"] == "ready":
            break
        assert time.monotonic() - ended < 10, listed
        await asyncio.sleep(0.25)
    playable_after = time.monotonic() - ended
    recording = listed["recordings"][0]
    assert [c["kind"] for c in recording["chapters"]] == ["speaker", "hall"], recording["chapters"]
    await member.goto(f"{server.url}/recordings?q=on tap nghi quyet")
    first = member.locator(".library-item").first
    assert "Ôn tập nghị quyết" in await first.inner_text()
    await member.screenshot(path=str(server.data_dir / "library.png"), full_page=True)

    # The replay page plays: time advances.
    await first.locator(".library-title a").click()
    await member.wait_for_url(f"{server.url}/recordings/{recording['id']}")
    await member.wait_for_function("() => document.getElementById('player').readyState >= 1")
    duration = float(await member.evaluate("() => document.getElementById('player').duration"))
    assert abs(duration - recording["duration_seconds"]) < 1.0, (duration, recording["duration_seconds"])
    await member.evaluate("() => { const v = document.getElementById('player'); v.muted = true; return v.play(); }")
    await member.wait_for_function("() => document.getElementById('player').currentTime > 2", timeout=15_000)
    # The hall's chapter seeks there.
    hall_at = recording["chapters"][1]["at_seconds"]
    await member.locator(".chapter").nth(1).click()
    await member.wait_for_function(f"() => Math.abs(document.getElementById('player').currentTime - {hall_at}) < 1.5")
    await member.wait_for_function(
        "() => document.querySelectorAll('.chapter')[1].getAttribute('aria-current') === 'true'")
    # Watch on at 2x: the reports go out every few seconds and the credit shows on the page.
    await member.select_option("#speed", "2.0")
    assert await member.evaluate("() => document.getElementById('player').playbackRate") == 2
    await member.wait_for_function("() => Number(document.getElementById('credit').dataset.seconds) > 3",
                                   timeout=20_000)
    await member.evaluate("() => document.getElementById('player').pause()")
    position = await _current(member)
    assert 3 < position < duration - 3, (position, duration)  # neither the start nor the end: it resumes
    await member.screenshot(path=str(server.data_dir / "replay.png"))
    await asyncio.sleep(1.0)

    # Reopened, it resumes where the member left off.
    await member.reload()
    await member.wait_for_function("() => document.getElementById('player').readyState >= 1")
    await member.wait_for_selector("#resume-note:not([hidden])")
    assert abs(await _current(member) - position) < 1.5

    # The report counts the replay, apart from live time (the member was not there live).
    report = await (await admin.request.get(f"{server.url}/api/v1/sessions/{session_id}/attendance")).json()
    row = next(m for m in report["members"] if m["username"] == MEMBER)
    assert row["live_seconds"] == 0 and row["replay_seconds"] >= 3 and row["credited_seconds"] == row["replay_seconds"]

    # The MP4 copy follows (the library shows its progress meanwhile) and plays in Chromium too.
    while not recording.get("mp4_url"):
        assert time.monotonic() - ended < 90, recording
        await asyncio.sleep(0.5)
        recording = (await (await member.request.get(f"{server.url}/api/v1/recordings/{recording['id']}")).json())
    await member.evaluate("""(src) => { const v = document.createElement('video'); v.id = 'mp4'; v.muted = true;
        v.src = src; document.body.appendChild(v); return v.play(); }""", recording["mp4_url"])
    await member.wait_for_function("() => { const v = document.getElementById('mp4'); "
                                   "return v.currentTime > 1 && v.videoWidth > 0; }", timeout=15_000)
    print(f"playable {playable_after:.1f} s after the end; MP4 ready {time.monotonic() - ended:.1f} s after")
