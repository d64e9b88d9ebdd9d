"""Live authority follows the data (issue 12, items 4 and 7): an open socket is not a licence.

A speaker replaced on the session stops hosting, an operator moved to another
hall stops speaking for the old one, a signed-out or expired token ends the
connections it opened, a host cannot remove a host, and a removed hall's
operator cannot come back as a member.
"""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from server import keys
from server.auth.roles import Role
from server.auth.tokens import issue_token
from server.signaling.connections import CLOSE_ROLE_CHANGED, CLOSE_SIGNED_OUT, CLOSE_TOKEN_EXPIRED
from server.storage.models import User
from tests.conftest import TEST_PASSWORD, Seed, bearer, login
from tests.media.clients import view, wait_until
from tests.signaling.helpers import OPENED, LiveClient, add_session, connect
from tests.signaling.test_whip_whep import http_answerer


async def closed_with(live: LiveClient, code: int, timeout: float = 10) -> None:
    await wait_until(lambda: live.ws.closed and live.closed_code is not None, timeout=timeout)
    assert live.closed_code == code, live.closed_code


async def test_a_replaced_speaker_stops_hosting_at_once(client: TestClient, seed: Seed, password_hash: str) -> None:
    database = client.app[keys.DATABASE]
    async with database.session() as db:
        other = User(username="speaker-2", full_name="Speaker Two", role=Role.SPEAKER, unit_id=seed.central.id,
                     password_hash=password_hash)
        db.add(other)
        await db.flush()
        other_id = other.id
    session_id = await add_session(database, seed, [seed.point_a.id])
    console = await connect(client, session_id, seed.speaker)
    hall = await connect(client, session_id, seed.operator)
    assert console.last("welcome")["you"]["role"] == "host"
    changed = await client.patch(f"/api/v1/sessions/{session_id}", headers=bearer(client.app, seed.admin),
                                 json={"speaker_id": other_id})
    assert changed.status == 200
    await closed_with(console, CLOSE_ROLE_CHANGED)
    # The hall's seat did not change: it stays, and is told of the edit.
    await hall.expect("session", since=1)
    assert not hall.ws.closed
    # Coming back, the former speaker is who the session now says: not its speaker (not even shown it).
    again = await client.get(f"/ws/sessions/{session_id}", headers=bearer(client.app, seed.speaker))
    assert again.status == 404
    await hall.close()


async def test_an_operator_moved_to_another_hall_stops_speaking_for_the_old_one(
        client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id, seed.point_b.id])
    hall = await connect(client, session_id, seed.operator)
    assert hall.last("welcome")["you"]["point_id"] == seed.point_a.id
    moved = await client.patch(f"/api/v1/users/{seed.operator.id}", headers=bearer(client.app, seed.admin),
                               json={"bridge_point_id": seed.point_b.id, "unit_id": seed.province_b.id})
    assert moved.status == 200, await moved.text()
    await closed_with(hall, CLOSE_ROLE_CHANGED)
    # Back, it speaks for hall B, and hall A is not connected any more.
    again = await connect(client, session_id, seed.operator)
    assert again.last("welcome")["you"] == {**again.last("welcome")["you"], "role": "hall",
                                            "point_id": seed.point_b.id}
    await again.close()


async def test_signing_out_revokes_the_token_and_ends_its_live_connections(client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    csrf = await login(client, "op-a")
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["bc_token"].value
    ws = await client.ws_connect(f"/ws/sessions/{session_id}")
    page_socket = LiveClient(ws)
    OPENED.append(page_socket)
    await page_socket.send("join")
    await page_socket.expect("welcome")
    # Another device of the same account (its own token) is not signed out with this one.
    other_device = await connect(client, session_id, seed.operator)
    assert (await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)).status == 303
    await closed_with(page_socket, CLOSE_SIGNED_OUT)
    stolen = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {cookie}"})
    assert stolen.status == 401 and (await stolen.json())["error"]["code"] == "token_revoked"
    await asyncio.sleep(0.3)
    assert not other_device.ws.closed
    await other_device.close()

    # A script signs its bearer token out the same way.
    token = (await (await client.post("/api/v1/auth/token", json={"username": "member-a",
                                                                   "password": TEST_PASSWORD})).json())["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/me", headers=headers)).status == 200
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status == 204
    assert (await client.get("/api/v1/me", headers=headers)).status == 401
    ws_refused = await client.get(f"/ws/sessions/{session_id}", headers=headers)
    assert ws_refused.status == 401


async def test_connections_end_when_their_token_expires(client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id, seed.point_b.id])
    secret = client.app[keys.JWT_SECRET]
    short = {"Authorization": "Bearer " + issue_token(secret, seed.member.id, seed.member.token_version, 3)}
    ws = await client.ws_connect(f"/ws/sessions/{session_id}", headers=short)
    live = LiveClient(ws)
    OPENED.append(live)
    await live.send("join")
    await live.expect("welcome")
    resources: list[str] = []
    player = await view(http_answerer(client, f"/whep/sessions/{session_id}", short, resources))
    room = client.app[keys.LIVE].existing(session_id)
    assert room is not None and len(room.resources) == 1
    # Someone with a long-lived token stays.
    lasting = await connect(client, session_id, seed.member_b)
    try:
        await closed_with(live, CLOSE_TOKEN_EXPIRED, timeout=12)
        await wait_until(lambda: len(room.resources) == 0, timeout=5)
        assert not lasting.ws.closed
    finally:
        await player.close()
        await lasting.close()


async def test_a_host_cannot_remove_a_host(client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    speaker = await connect(client, session_id, seed.speaker)
    admin = await connect(client, session_id, seed.admin)
    await admin.send("remove", key=speaker.last("welcome")["you"]["key"])
    await admin.expect("error", code="invalid_target")
    assert not speaker.ws.closed
    for live in (speaker, admin):
        await live.close()


async def test_a_removed_halls_operator_cannot_come_back_as_a_member(client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    console = await connect(client, session_id, seed.speaker)
    hall = await connect(client, session_id, seed.operator)
    await console.send("remove", key=hall.last("welcome")["you"]["key"])
    await wait_until(lambda: hall.ws.closed, timeout=5)
    ws = await client.ws_connect(f"/ws/sessions/{session_id}", headers=bearer(client.app, seed.operator))
    sneaking = LiveClient(ws)
    OPENED.append(sneaking)
    await sneaking.send("join", **{"as": "member"})
    await sneaking.expect("error", code="removed")
    # A member of the same province is not affected.
    member = await connect(client, session_id, seed.member)
    for live in (member, sneaking, console):
        await live.close()


async def test_questions_are_limited_per_participant_whatever_its_number_of_sockets(
        client: TestClient, seed: Seed) -> None:
    from server.live.session import QUESTIONS_PER_WINDOW

    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    host = await connect(client, session_id, seed.speaker)
    sockets = [await connect(client, session_id, seed.member) for _ in range(3)]
    answers = []
    for index in range(QUESTIONS_PER_WINDOW + 4):
        live = sockets[index % 3]
        since = live.mark()
        await live.send("question", text=f"Câu hỏi {index}")
        await wait_until(lambda: any(m["type"] in ("question_received", "error") for m in live.received[since:]))
        answers.append(next(m for m in live.received[since:] if m["type"] in ("question_received", "error")))
    assert [a["type"] for a in answers] == ["question_received"] * QUESTIONS_PER_WINDOW + ["error"] * 4
    assert {a.get("code") for a in answers[QUESTIONS_PER_WINDOW:]} == {"rate_limited"}
    await wait_until(lambda: len([m for m in host.received if m["type"] == "question"]) == QUESTIONS_PER_WINDOW)
    # Another member is not affected.
    other = await connect(client, session_id, seed.admin, **{"as": "member"})
    await other.send("question", text="Một câu khác")
    await other.expect("question_received")
    for live in (*sockets, other, host):
        await live.close()
