"""The websocket protocol's guards: validation, roles, origin, size, reconnection, lifecycle."""

from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from server import keys
from server.live.lifecycle import SessionStatus
from tests.conftest import Seed, bearer
from tests.media.clients import wait_until
from tests.signaling.helpers import add_session, connect


@pytest.fixture
async def session_id(client: TestClient, seed: Seed) -> int:
    return await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id, seed.point_b.id])


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('{"no": "type"}', "invalid_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "grant_floor"}', "invalid_message"),
        ('{"type": "grant_floor", "point_id": "seven"}', "invalid_message"),
        ('{"type": "grant_floor", "point_id": 1, "limit_seconds": 5}', "invalid_message"),
        ('{"type": "offer", "pc": "side", "sdp": "v=0"}', "invalid_message"),
        ('{"type": "question", "text": "' + "x" * 1001 + '"}', "invalid_message"),
        ('{"type": "remove", "key": "admin"}', "invalid_message"),
        ('{"type": "raise_hand", "extra": 1}', "invalid_message"),
        ('{"type": "offer", "pc": "view", "sdp": "hello"}', "bad_sdp"),
        ('{"type": "candidate", "pc": "view", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}',
         "no_peer_connection"),
    ],
)
async def test_invalid_messages_get_an_error_and_the_socket_stays(client: TestClient, seed: Seed, session_id: int,
                                                                  frame: str, code: str) -> None:
    live = await connect(client, session_id, seed.speaker)
    mark = live.mark()
    await live.ws.send_str(frame)
    error = await live.expect("error", since=mark)
    assert error["code"] == code
    await live.send("ping", t=42)
    assert (await live.expect("pong", since=mark))["t"] == 42  # still served
    await live.close()


async def test_messages_before_join_are_refused(client: TestClient, seed: Seed, session_id: int) -> None:
    ws = await client.ws_connect(f"/ws/sessions/{session_id}", headers=bearer(client.app, seed.member))
    await ws.send_json({"type": "raise_hand"})
    reply = await ws.receive_json(timeout=5)
    assert reply["type"] == "error" and reply["code"] == "not_joined"
    await ws.close()


async def test_binary_frames_are_refused_politely(client: TestClient, seed: Seed, session_id: int) -> None:
    live = await connect(client, session_id, seed.member)
    await live.ws.send_bytes(b"\x00\x01")
    assert (await live.expect("error"))["code"] == "binary_not_supported"
    await live.close()


async def test_an_oversized_frame_closes_with_1009(client: TestClient, seed: Seed, session_id: int) -> None:
    ws = await client.ws_connect(f"/ws/sessions/{session_id}", headers=bearer(client.app, seed.member))
    await ws.send_str('{"type": "question", "text": "' + "x" * 300_000 + '"}')
    message = await ws.receive(timeout=5)
    assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    assert ws.close_code == 1009


async def test_cross_origin_upgrades_are_refused(client: TestClient, seed: Seed, session_id: int) -> None:
    headers = {**bearer(client.app, seed.member), "Origin": "https://evil.example"}
    response = await client.get(f"/ws/sessions/{session_id}", headers={
        **headers, "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert response.status == 403
    same = await client.ws_connect(f"/ws/sessions/{session_id}", headers={
        **bearer(client.app, seed.member), "Origin": str(client.make_url("")).rstrip("/")})
    await same.close()


@pytest.mark.parametrize(("who", "status"), [("anonymous", 401), ("member_b", 404)])
async def test_upgrade_needs_a_user_who_may_see_the_session(client: TestClient, seed: Seed, session_id: int,
                                                            who: str, status: int) -> None:
    headers = {} if who == "anonymous" else bearer(client.app, getattr(seed, who))
    point_b_only = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    response = await client.get(f"/ws/sessions/{point_b_only}", headers=headers)
    assert response.status == status


async def test_ended_sessions_refuse_new_sockets(client: TestClient, seed: Seed) -> None:
    ended = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id], status=SessionStatus.ENDED)
    response = await client.get(f"/ws/sessions/{ended}", headers=bearer(client.app, seed.speaker))
    assert response.status == 409


@pytest.mark.parametrize(
    ("user", "request_", "role_code"),
    [
        ("member", {"as": "host"}, "forbidden"),
        ("member", {"as": "hall"}, "forbidden"),
        ("speaker", {"as": "hall"}, "forbidden"),
    ],
)
async def test_nobody_joins_above_their_role(client: TestClient, seed: Seed, session_id: int, user: str,
                                             request_: dict[str, Any], role_code: str) -> None:
    ws = await client.ws_connect(f"/ws/sessions/{session_id}", headers=bearer(client.app, seed.user(user)))
    await ws.send_json({"type": "join", **request_})
    reply = await ws.receive_json(timeout=5)
    assert reply == {**reply, "type": "error", "code": role_code}
    await ws.close()


async def test_roles_are_decided_by_the_server(client: TestClient, seed: Seed, session_id: int) -> None:
    cases = [(seed.speaker, {}, "host"), (seed.admin, {}, "host"), (seed.operator, {}, "hall"),
             (seed.member, {}, "member")]
    for user, join, role in cases:
        live = await connect(client, session_id, user, **join)
        assert live.received[0]["you"]["role"] == role
        await live.close()
    # One person has one role per session: an administrator who only watches joins another one as a member.
    other = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    watcher = await connect(client, other, seed.admin, **{"as": "member"})
    assert watcher.received[0]["you"]["role"] == "member"
    await watcher.close()


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("member", {"type": "raise_hand"}),
        ("member", {"type": "grant_floor", "point_id": 1}),
        ("member", {"type": "start"}),
        ("operator", {"type": "start"}),
        ("operator", {"type": "end"}),
        ("operator", {"type": "revoke_floor"}),
        ("operator", {"type": "mute", "point_id": 1, "muted": True}),
        ("operator", {"type": "remove", "key": "user:1"}),
        ("operator", {"type": "show", "source": "speaker"}),
        ("member", {"type": "offer", "pc": "publish", "sdp": "v=0\r\nm=video 9 RTP/SAVPF 96\r\n"}),
        ("speaker", {"type": "question", "text": "?"}),
    ],
)
async def test_actions_above_the_role_are_refused(client: TestClient, seed: Seed, session_id: int, user: str,
                                                  message: dict[str, Any]) -> None:
    live = await connect(client, session_id, seed.user(user))
    mark = live.mark()
    await live.ws.send_json(message)
    assert (await live.expect("error", since=mark))["code"] == "forbidden"
    await live.close()


async def test_a_hall_that_reconnects_is_the_same_participant(client: TestClient, seed: Seed,
                                                              session_id: int) -> None:
    speaker = await connect(client, session_id, seed.speaker)
    first = await connect(client, session_id, seed.operator)
    await first.send("raise_hand")
    await speaker.expect("floor", queue=[{"point_id": seed.point_a.id, "name": seed.point_a.name}])
    # The new socket arrives before the old one is noticed dead, as after a network blip.
    second = await connect(client, session_id, seed.operator)
    assert second.received[0]["you"]["key"] == first.received[0]["you"]["key"] == f"point:{seed.point_a.id}"
    await first.close()

    def one_hall_connected_once() -> bool:
        roster = speaker.last("roster")
        halls = [p for p in (roster or {}).get("participants", []) if p["role"] == "hall"]
        return len(halls) == 1 and halls[0]["connected"] and halls[0]["connections"] == 1

    await wait_until(one_hall_connected_once, timeout=5)
    floor = speaker.last("floor")
    assert [q["point_id"] for q in floor["queue"]] == [seed.point_a.id]  # the hand survived the reconnect
    await second.close()
    await speaker.close()


async def test_questions_reach_the_hosts(client: TestClient, seed: Seed, session_id: int) -> None:
    speaker = await connect(client, session_id, seed.speaker)
    member = await connect(client, session_id, seed.member)
    await member.send("question", text="Xin làm rõ mục 3?")
    ack = await member.expect("question_received")
    question = await speaker.expect("question")
    assert question["id"] == ack["id"]
    assert question["text"] == "Xin làm rõ mục 3?" and question["from"] == seed.member.full_name
    await member.close()
    await speaker.close()


async def test_grant_needs_a_connected_hall_and_remove_keeps_it_out(client: TestClient, seed: Seed,
                                                                   session_id: int) -> None:
    speaker = await connect(client, session_id, seed.speaker)
    await speaker.send("grant_floor", point_id=seed.point_a.id)
    assert (await speaker.expect("error", request="grant_floor"))["code"] == "not_connected"
    hall = await connect(client, session_id, seed.operator)
    await speaker.send("remove", key=f"point:{seed.point_a.id}")
    await hall.expect("removed")
    await _closed(hall)
    assert hall.closed_code == 4003
    ws = await client.ws_connect(f"/ws/sessions/{session_id}", headers=bearer(client.app, seed.operator))
    await ws.send_json({"type": "join"})
    assert (await ws.receive_json(timeout=5))["code"] == "removed"
    await ws.close()
    await speaker.close()


async def _closed(live: Any) -> None:
    await wait_until(lambda: live.closed_code is not None, timeout=5)


async def test_start_and_end_through_the_api(client: TestClient, seed: Seed, session_id: int) -> None:
    hall = await connect(client, session_id, seed.operator)
    refused = await client.post(f"/api/v1/sessions/{session_id}/start", headers=bearer(client.app, seed.operator))
    assert refused.status == 403
    started = await client.post(f"/api/v1/sessions/{session_id}/start", headers=bearer(client.app, seed.speaker))
    assert started.status == 200
    body = await started.json()
    assert body["status"] == "live" and body["actual_start"]
    await hall.expect("session", status="live")
    again = await client.post(f"/api/v1/sessions/{session_id}/start", headers=bearer(client.app, seed.speaker))
    assert again.status == 409
    ended = await client.post(f"/api/v1/sessions/{session_id}/end", headers=bearer(client.app, seed.admin))
    assert (await ended.json())["status"] == "ended"
    await hall.expect("session", status="ended")
    await _closed(hall)
    assert hall.closed_code == 1000


async def test_joins_do_not_flood_everyone_and_hosts_see_members_as_counts(client: TestClient, seed: Seed,
                                                                         session_id: int) -> None:
    speaker = await connect(client, session_id, seed.speaker)
    watcher = await connect(client, session_id, seed.member)
    mark = watcher.mark()
    others = [await connect(client, session_id, user) for user in (seed.member_b, seed.operator)]
    await watcher.send("ping")
    await watcher.expect("pong", since=mark)
    # Nothing about the floor changed: the watcher was told nothing new.
    assert [m["type"] for m in watcher.received[mark:]] == ["pong"]
    await wait_until(lambda: (speaker.last("roster") or {}).get("members", {}).get("connected") == 2)
    roster = speaker.last("roster")
    assert roster["members"] == {"connected": 2, "seen": 2}
    assert {p["role"] for p in roster["participants"]} == {"host", "hall"}
    for live in (*others, watcher, speaker):
        await live.close()


async def test_revoking_a_users_tokens_ends_their_live_connections(client: TestClient, seed: Seed,
                                                                  session_id: int) -> None:
    hall = await connect(client, session_id, seed.operator)
    response = await client.patch(f"/api/v1/users/{seed.operator.id}", headers=bearer(client.app, seed.admin),
                                  json={"active": False})
    assert response.status == 200
    await _closed(hall)
    assert hall.closed_code == 4001
    # And the same token can no longer open a socket.
    refused = await client.get(f"/ws/sessions/{session_id}", headers=bearer(client.app, seed.operator))
    assert refused.status == 401


async def test_an_unused_room_closes_by_itself(client: TestClient, seed: Seed, session_id: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from server.signaling import room as room_module

    monkeypatch.setattr(room_module, "IDLE_SECONDS", 0.2)
    member = await connect(client, session_id, seed.member)
    await member.close()
    await wait_until(lambda: session_id not in client.app[keys.LIVE].rooms, timeout=5)


async def test_a_hall_that_reloads_during_its_floor_keeps_it(client: TestClient, seed: Seed, session_id: int) -> None:
    speaker = await connect(client, session_id, seed.speaker)
    hall = await connect(client, session_id, seed.operator)
    await speaker.send("grant_floor", point_id=seed.point_a.id, limit_seconds=120)
    await hall.expect("floor_granted")
    # A reload: the browser closes the socket with "going away" and opens a new one a moment later.
    await hall.ws.close(code=1001)
    await wait_until(lambda: speaker.last("floor")["holder"]["reconnecting"] is True)
    assert speaker.last("floor")["holder"]["point_id"] == seed.point_a.id
    back = await connect(client, session_id, seed.operator)
    assert back.received[0]["floor"]["holder"]["point_id"] == seed.point_a.id
    await wait_until(lambda: speaker.last("floor")["holder"]["reconnecting"] is False)
    assert speaker.last("floor_ended") is None
    # It may publish again: the offer is refused only for a bad description, not for want of the floor.
    mark = back.mark()
    await back.send("offer", pc="publish", sdp="v=0\r\nbad")
    assert (await back.expect("error", since=mark))["code"] == "bad_sdp"
    await back.close()
    await speaker.close()


async def test_a_lost_hall_loses_the_floor_after_the_grace_period(aiohttp_client: Any, settings: Any,
                                                                 seed: Seed) -> None:
    from sqlalchemy import select

    from server.app import create_app
    from server.storage.models import FloorGrant
    from tests.conftest import make_settings

    app = create_app(make_settings(settings.data_dir, ice={"addresses": "127.0.0.1"},
                                   live={"reconnect_grace_seconds": 1}))
    client = await aiohttp_client(app)
    session_id = await add_session(app[keys.DATABASE], seed, [seed.point_a.id])
    speaker = await connect(client, session_id, seed.speaker)
    hall = await connect(client, session_id, seed.operator)
    await speaker.send("grant_floor", point_id=seed.point_a.id)
    await hall.expect("floor_granted")
    # The network goes: no close frame at all.
    hall.ws._conn.transport.abort()
    ended = await speaker.expect("floor_ended", timeout=10)
    assert ended == {"type": "floor_ended", "point_id": seed.point_a.id, "name": seed.point_a.name,
                     "reason": "dropped"}
    async with app[keys.DATABASE].session() as db:
        grants = list(await db.scalars(select(FloorGrant).where(FloorGrant.session_id == session_id)))
    assert [(g.end_reason, g.ended_at is not None) for g in grants] == [("dropped", True)]
    await speaker.close()
