"""A blip must not cost a hall its floor: the browser side of the reconnect grace period.

The pages run against the real server; Playwright stands in the websocket's
path (route_web_socket) to play the server messages of the grace period
(docs/protocol.md: a "reconnecting" point, a floor holder that is
reconnecting, floor_ended) and to see what the pages send.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.conftest import Server, signed_in

WS = "**/ws/sessions/*"


async def _new_session(browser: Any, server: Server) -> tuple[int, dict[str, int]]:
    """A session of the demo's halls starting now; its id and the halls' ids by slug."""
    admin = await signed_in(browser, server, "admin", server.logins["admin"])
    points = (await (await admin.request.get(f"{server.url}/api/v1/bridge-points")).json())["bridge_points"]
    halls = {point["slug"]: point["id"] for point in points if not point["is_hub"]}
    speakers = (await (await admin.request.get(f"{server.url}/api/v1/users?role=speaker")).json())["users"]
    csrf = next(c["value"] for c in await admin.context.cookies() if c["name"] == "bc_csrf")
    now = datetime.now(UTC)
    response = await admin.request.post(f"{server.url}/api/v1/sessions", headers={"X-CSRF-Token": csrf}, data={
        "title": "Kiểm thử kết nối lại", "speaker_id": speakers[0]["id"],
        "scheduled_start": (now - timedelta(minutes=5)).isoformat(),
        "scheduled_end": (now + timedelta(hours=2)).isoformat(), "invited_point_ids": list(halls.values())})
    assert response.ok, await response.text()
    session_id = (await response.json())["id"]
    await admin.context.close()
    return session_id, halls


async def test_the_console_shows_a_reconnecting_hall_and_floors_that_end_by_themselves(
        server: Server, browser: Any) -> None:
    session_id, halls = await _new_session(browser, server)
    hai_phong = halls["hai-phong"]
    speaker = await signed_in(browser, server, "speaker", server.logins["speaker"])
    sockets: list[Any] = []
    quiet: set[str] = set()  # server message types held back once the test plays its own

    def route(ws: Any) -> None:
        upstream = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            if json.loads(message).get("type") not in quiet:
                ws.send(message)

        upstream.on_message(from_server)
        ws.on_message(lambda message: upstream.send(message))
        sockets.append(ws)

    await speaker.route_web_socket(WS, route)
    await speaker.goto(f"{server.url}/sessions/{session_id}/live")
    await speaker.wait_for_selector("#conn-state[data-state=online]")
    quiet.update({"roll_call", "floor", "roster"})
    ws = sockets[-1]

    # Hải Phòng's connection dropped: amber "reconnecting" on its row, not "not connected".
    points = [{"point_id": pid, "name": f"Điểm cầu {slug}", "state": "not_connected", "muted": False, "hand": False,
               "talk_seconds": 0} for slug, pid in halls.items()]
    for point in points:
        if point["point_id"] == hai_phong:
            point.update(state="reconnecting", hand=True, name="Điểm cầu Hải Phòng", talk_seconds=42)
    ws.send(json.dumps({"type": "roll_call", "points": points}))
    row = speaker.locator(f"#rollcall tr[data-point-id='{hai_phong}']")
    await speaker.wait_for_selector(f"#rollcall tr[data-point-id='{hai_phong}'][data-state=reconnecting]")
    assert (await row.locator(".rc-state").inner_text()).strip() == "Đang kết nối lại…"
    assert await row.locator(".hand-badge").is_visible()  # it keeps its place in the queue
    assert "1 đang kết nối lại" in await speaker.inner_text("#rollcall-summary")
    assert await row.locator("[data-grant]").is_disabled()  # no new grant to a hall that is away

    # It held the floor: the floor panel says it is reconnecting, and still names it.
    holder = {"point_id": hai_phong, "name": "Điểm cầu Hải Phòng", "limit_seconds": None, "remaining": None,
              "reconnecting": True}
    ws.send(json.dumps({"type": "floor", "holder": holder, "queue": [], "program": "floor", "on_air": None}))
    await speaker.wait_for_selector("#floor-panel[data-reconnecting=true]")
    assert await speaker.locator("#floor-reconnecting").is_visible()
    assert "Hải Phòng" in await speaker.inner_text("#floor-name")
    ws.send(json.dumps({"type": "floor", "holder": {**holder, "reconnecting": False}, "queue": [],
                        "program": "floor", "on_air": f"point:{hai_phong}"}))
    await speaker.wait_for_selector("#floor-panel[data-reconnecting=false]")
    assert await speaker.locator("#floor-reconnecting").is_hidden()

    # The grace period ran out: a clear alert that stays until closed. A floor the speaker
    # took back (revoked) adds nothing.
    ws.send(json.dumps({"type": "floor_ended", "point_id": hai_phong, "name": "Điểm cầu Hải Phòng",
                        "reason": "dropped"}))
    alert = speaker.locator(".floor-alert", has_text="Điểm cầu Hải Phòng bị mất kết nối")
    await alert.wait_for()
    ws.send(json.dumps({"type": "floor_ended", "point_id": hai_phong, "name": "Điểm cầu Hải Phòng",
                        "reason": "revoked"}))
    ws.send(json.dumps({"type": "floor_ended", "point_id": hai_phong, "name": "Điểm cầu Hải Phòng",
                        "reason": "expired"}))
    await speaker.locator(".floor-alert", has_text="hết thời gian phát biểu").wait_for()
    assert await speaker.locator(".floor-alert").count() == 2
    await alert.locator("button").click()
    await alert.wait_for(state="detached")
    assert await speaker.locator(".floor-alert").count() == 1
    await speaker.context.close()


async def test_a_hall_drops_rather_than_leaves_on_pagehide_and_resumes_its_floor(
        server: Server, browser: Any) -> None:
    session_id, halls = await _new_session(browser, server)
    hai_phong = halls["hai-phong"]
    hall = await signed_in(browser, server, "op-hai-phong", server.logins["operators"])
    # The server, played here: what each welcome says about the floor, in connection order.
    holders: list[int | None] = [hai_phong, hai_phong, None]
    connections: list[dict[str, Any]] = []
    opened = [asyncio.Event() for _ in range(6)]  # opened[n]: the (n+1)th socket arrived

    def route(ws: Any) -> None:
        seen: dict[str, Any] = {"sent": [], "closed": None, "did_close": asyncio.Event(),
                                "offered_publish": asyncio.Event()}
        connections.append(seen)
        holder = holders[min(len(connections), len(holders)) - 1]

        async def closed(code: int | None, reason: str | None) -> None:
            seen["closed"] = code
            seen["did_close"].set()
            await ws.close(code=code, reason=reason or "")  # complete the page's close handshake

        def from_page(message: str | bytes) -> None:
            sent = json.loads(message)
            seen["sent"].append(sent)
            if sent["type"] == "offer" and sent["pc"] == "publish":
                seen["offered_publish"].set()
            if sent["type"] == "join":
                floor = {"type": "floor", "queue": [], "program": "floor", "on_air": None,
                         "holder": {"point_id": holder, "name": "Điểm cầu Hải Phòng", "limit_seconds": None,
                                    "remaining": None, "reconnecting": False} if holder else None}
                ws.send(json.dumps({
                    "type": "welcome", "you": {"key": f"point:{hai_phong}", "role": "hall", "point_id": hai_phong},
                    "session": {"type": "session", "id": session_id, "title": "Kiểm thử kết nối lại",
                                "status": "live", "actual_start": datetime.now(UTC).isoformat()},
                    "floor": floor}))

        seen["route"] = ws
        ws.on_message(from_page)
        ws.on_close(closed)
        opened[len(connections) - 1].set()

    async def until(event: asyncio.Event) -> None:
        await asyncio.wait_for(event.wait(), timeout=15)

    await hall.route_web_socket(WS, route)
    live = f"{server.url}/sessions/{session_id}/live"
    await hall.goto(live)

    # Opened (or reloaded) while holding the floor: it publishes at once, without floor_granted.
    await hall.wait_for_selector("#stage[data-floor=self]")
    assert await hall.locator("#floor-frame").is_visible()
    await until(connections[0]["offered_publish"])

    # The connection drops; on the new socket the floor is still its own: it offers again.
    await connections[0]["route"].close(code=4500, reason="network blip")
    await until(opened[1])
    await until(connections[1]["offered_publish"])
    assert await hall.get_attribute("#stage", "data-floor") == "self"
    assert not any(m["type"] == "leave" for m in connections[0]["sent"])

    # Back again after the grace period: the floor is gone, the hall stops and is told why.
    await connections[1]["route"].close(code=4500, reason="network blip")
    await until(opened[2])
    await hall.wait_for_selector("#stage[data-floor=none]")
    assert await hall.locator("#floor-frame").is_hidden()
    assert "kết thúc trong lúc mất kết nối" in await hall.inner_text("#notice")

    # The page going away (pagehide: a reload, a closed tab) is a drop, not a leave:
    # no "leave", and a close code other than 1000.
    third = connections[2]
    await hall.evaluate("() => window.dispatchEvent(new PageTransitionEvent('pagehide', {persisted: false}))")
    await until(third["did_close"])
    assert third["closed"] == 4000
    assert "leave" not in [m["type"] for m in third["sent"]]
    # A real navigation away sends no "leave" either.
    await hall.goto(live)
    await until(opened[3])
    await hall.wait_for_function("() => window.Bridgecast.hall.client.state === 'online'")
    await hall.goto(f"{server.url}/sessions")
    await until(connections[3]["did_close"])
    assert "leave" not in [m["type"] for m in connections[3]["sent"]]

    # Leaving on purpose (LiveClient.close, what a "leave" button calls) still says so.
    await hall.goto(live)
    await until(opened[4])
    await hall.wait_for_function("() => window.Bridgecast.hall.client.state === 'online'")
    await hall.evaluate("() => window.Bridgecast.hall.client.close()")
    last = connections[-1]
    await until(last["did_close"])
    assert [m["type"] for m in last["sent"]][-1] == "leave"
    assert last["closed"] == 1000
    await hall.context.close()
