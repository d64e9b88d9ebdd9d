"""The live room's dispatch without WebRTC: an in-memory store, fake connections, a clock moved by hand.

Every message a fake connection receives is checked against the server's
message schemas, so these tests also pin the wire format.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.auth.principal import Principal
from server.auth.roles import Role
from server.errors import Conflict
from server.live import events as ev
from server.live.bus import InMemoryEventBus
from server.live.lifecycle import SessionAction, SessionStatus, TransitionError, transition
from server.live.session import LiveSession
from server.live.store import SessionInfo
from server.media.peer import IceConfig
from server.signaling import room as room_module
from server.signaling.connections import TokenBucket
from server.signaling.room import LiveRoom
from tests.media.clients import wait_until
from tests.signaling.helpers import check_server_message

HP, TN = 11, 12


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        return datetime(2026, 12, 2, 1, 0, tzinfo=UTC) + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return 500.0 + self.seconds


class MemoryStore:
    """The LiveStore contract on a dict: what the database does, without one."""

    def __init__(self, info: SessionInfo) -> None:
        self.info = info

    async def load(self, session_id: int) -> SessionInfo:
        return self.info

    async def transition(self, session_id: int, action: SessionAction) -> SessionInfo:
        try:
            status = transition(self.info.status, action)
        except TransitionError as exc:
            raise Conflict(str(exc), code=exc.code) from None
        start = datetime.now(UTC) if action is SessionAction.START else self.info.actual_start
        self.info = SessionInfo(**{**self.info.__dict__, "status": status, "actual_start": start})
        return self.info


class FakeConnection:
    def __init__(self, name: str) -> None:
        self.id = name
        self.received: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    async def send(self, message: dict[str, Any] | str) -> None:
        body = json.loads(message) if isinstance(message, str) else message
        check_server_message(body)
        self.received.append(body)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m["type"] == kind]

    def last(self, kind: str) -> dict[str, Any] | None:
        found = self.of(kind)
        return found[-1] if found else None


def principal(user_id: int, role: Role, point: int | None = None, name: str = "") -> Principal:
    return Principal(user_id=user_id, username=f"u{user_id}", full_name=name or f"User {user_id}", role=role,
                     unit_id=None, bridge_point_id=point, token_version=1)


SPEAKER = principal(1, Role.SPEAKER, name="Báo cáo viên")
HALL_HP = principal(2, Role.OPERATOR, HP, "Kỹ thuật Hải Phòng")
HALL_TN = principal(3, Role.OPERATOR, TN, "Kỹ thuật Thái Nguyên")
MEMBER = principal(4, Role.MEMBER, name="Nguyễn Văn An")


async def settle() -> None:
    """Let the room finish what one message set off: the broadcaster checks the floor at the end of the turn."""
    for _ in range(3):
        await asyncio.sleep(0)


class Harness:
    def __init__(self, status: SessionStatus = SessionStatus.LIVE, grace: float = 20.0) -> None:
        self.clock = Clock()
        info = SessionInfo(id=9, title="Nghị quyết", speaker_id=1, status=status,
                           invited={HP: "Hải Phòng", TN: "Thái Nguyên"})
        self.store = MemoryStore(info)
        self.bus = InMemoryEventBus()
        self.events: list[ev.Event] = []

        async def record(event: ev.Event) -> None:
            self.events.append(event)

        self.bus.subscribe(record, name="recorder")
        self.closed = asyncio.Event()

        async def on_closed(room: LiveRoom) -> None:
            self.closed.set()

        session = LiveSession(info, clock=self.clock, grace_seconds=grace)
        self.room = LiveRoom(session, self.store, self.bus, IceConfig(), on_closed=on_closed)

    async def send(self, connection: FakeConnection, who: Principal, kind: str, **values: Any) -> None:
        await self.room.handle(connection, who, json.dumps({"type": kind, **values}))
        await settle()

    async def join(self, name: str, who: Principal, **values: Any) -> FakeConnection:
        connection = FakeConnection(name)
        await self.send(connection, who, "join", **values)
        assert connection.received[0]["type"] == "welcome", connection.received
        return connection

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


@pytest.fixture
async def harness() -> Any:
    made = Harness()
    yield made
    await made.room.close()


async def test_join_welcomes_and_the_hosts_board_follows(harness: Harness) -> None:
    host = await harness.join("s", SPEAKER)
    hall = await harness.join("h", HALL_HP)
    welcome = hall.received[0]
    assert welcome["you"] == {"key": "point:11", "role": "hall", "point_id": HP, "name": "Hải Phòng"}
    assert welcome["session"]["status"] == "live" and welcome["floor"]["holder"] is None
    await wait_until(lambda: host.last("roll_call") is not None and host.last("roster") is not None)
    states = {p["point_id"]: p["state"] for p in host.last("roll_call")["points"]}
    assert states == {HP: "connected", TN: "not_connected"}
    # Halls do not see the board.
    assert hall.last("roll_call") is None and hall.last("roster") is None
    # The room opened on a session live already (a restart): what follows a session resumes first.
    assert harness.kinds() == ["session_resumed", "endpoint_joined", "endpoint_joined"]


async def test_the_floor_from_hand_to_grant_to_revoke(harness: Harness) -> None:
    host = await harness.join("s", SPEAKER)
    hall = await harness.join("h", HALL_HP)
    member = await harness.join("m", MEMBER)
    await harness.send(hall, HALL_HP, "raise_hand")
    assert member.last("floor")["queue"] == [{"point_id": HP, "name": "Hải Phòng"}]
    await harness.send(host, SPEAKER, "grant_floor", point_id=HP, limit_seconds=120)
    assert hall.last("floor_granted") == {"type": "floor_granted", "limit_seconds": 120}
    floor = member.last("floor")
    assert floor["holder"]["point_id"] == HP and floor["queue"] == []
    await harness.send(host, SPEAKER, "revoke_floor")
    assert hall.last("floor_revoked") == {"type": "floor_revoked", "reason": "revoked"}
    assert host.last("floor_ended") == {"type": "floor_ended", "point_id": HP, "name": "Hải Phòng",
                                        "reason": "revoked"}
    assert member.last("floor")["holder"] is None
    assert [k for k in harness.kinds() if k.startswith(("hand", "floor"))] == ["hand_raised", "floor_granted",
                                                                               "floor_ended"]


async def test_the_floor_is_sent_only_when_it_changes(harness: Harness) -> None:
    await harness.join("s", SPEAKER)
    watcher = await harness.join("m", MEMBER)
    before = len(watcher.received)
    others = [await harness.join(f"x{i}", principal(100 + i, Role.MEMBER)) for i in range(5)]
    assert len(watcher.received) == before  # five joins changed nothing in the floor
    await harness.send(others[0], principal(100, Role.MEMBER), "ping", t=5)
    assert others[0].last("pong") == {"type": "pong", "t": 5}


async def test_one_change_is_one_floor_message_however_many_events(harness: Harness) -> None:
    host = await harness.join("s", SPEAKER)
    await harness.join("h", HALL_HP)
    await harness.join("t", HALL_TN)
    watcher = await harness.join("m", MEMBER)
    await harness.send(host, SPEAKER, "grant_floor", point_id=HP)
    before = len(watcher.of("floor"))
    # Granting another hall ends the first grant and starts the second: two events, one message.
    await harness.send(host, SPEAKER, "grant_floor", point_id=TN)
    assert [k for k in harness.kinds() if k.startswith("floor")][-2:] == ["floor_ended", "floor_granted"]
    floors = watcher.of("floor")[before:]
    assert len(floors) == 1 and floors[0]["holder"]["point_id"] == TN


async def test_a_time_limit_ends_the_floor_through_the_rooms_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(room_module, "TICK_SECONDS", 0.02)
    harness = Harness()
    try:
        host = await harness.join("s", SPEAKER)
        hall = await harness.join("h", HALL_HP)
        await harness.send(host, SPEAKER, "grant_floor", point_id=HP, limit_seconds=10)
        harness.clock.seconds = 9.5
        await asyncio.sleep(0.1)
        assert hall.last("floor_revoked") is None
        harness.clock.seconds = 10.5
        await wait_until(lambda: hall.last("floor_revoked") is not None, timeout=2)
        assert hall.last("floor_revoked")["reason"] == "expired"
        assert host.last("floor_ended")["reason"] == "expired"
    finally:
        await harness.room.close()


async def test_a_hall_that_drops_keeps_the_floor_and_the_speaker_is_told_when_it_is_gone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(room_module, "TICK_SECONDS", 0.02)
    harness = Harness(grace=20)
    try:
        host = await harness.join("s", SPEAKER)
        hall = await harness.join("h", HALL_HP)
        await harness.send(host, SPEAKER, "grant_floor", point_id=HP)
        # The page reloads: the socket is lost, a new one joins 1 s later.
        await harness.room.disconnect(hall, dropped=True)
        await settle()
        assert host.last("floor")["holder"]["reconnecting"] is True
        def board_state() -> str | None:
            board = host.last("roll_call")
            return {p["point_id"]: p["state"] for p in board["points"]}[HP] if board else None

        await wait_until(lambda: board_state() == "reconnecting")
        harness.clock.seconds = 1
        again = await harness.join("h2", HALL_HP)
        assert again.received[0]["floor"]["holder"]["point_id"] == HP
        assert host.last("floor")["holder"]["reconnecting"] is False
        assert host.last("floor_ended") is None
        # Lost for good: after the grace period the floor ends as "dropped" and the speaker hears of it.
        await harness.room.disconnect(again, dropped=True)
        await settle()
        harness.clock.seconds = 25
        await wait_until(lambda: host.last("floor_ended") is not None, timeout=2)
        assert host.last("floor_ended")["reason"] == "dropped"
        assert host.last("floor")["holder"] is None
        assert "participant_lost" in harness.kinds()
    finally:
        await harness.room.close()


async def test_a_clean_leave_ends_the_floor_at_once(harness: Harness) -> None:
    host = await harness.join("s", SPEAKER)
    hall = await harness.join("h", HALL_HP)
    await harness.send(host, SPEAKER, "grant_floor", point_id=HP)
    await harness.send(hall, HALL_HP, "leave")
    assert hall.closed == (1000, "left")
    assert host.last("floor_ended")["reason"] == "left"


async def test_mute_remove_and_questions(harness: Harness) -> None:
    host = await harness.join("s", SPEAKER)
    hall = await harness.join("h", HALL_HP)
    member = await harness.join("m", MEMBER)
    await harness.send(host, SPEAKER, "mute", point_id=HP, muted=True)
    assert hall.last("mute") == {"type": "mute", "muted": True}
    assert "point:11" in harness.room.media.feed.audio.muted  # left out of the mix
    await harness.send(member, MEMBER, "question", text="Xin làm rõ mục 3?")
    ack = member.last("question_received")
    question = host.last("question")
    assert question["id"] == ack["id"] and question["from"] == "Nguyễn Văn An" and question["point_id"] is None
    await harness.send(host, SPEAKER, "remove", key="point:11")
    assert hall.last("removed") == {"type": "removed"}
    await wait_until(lambda: hall.closed is not None)
    assert hall.closed[0] == 4003
    refused = FakeConnection("h3")
    await harness.send(refused, HALL_HP, "join")
    assert refused.last("error")["code"] == "removed"
    # A host who reloads sees the questions asked so far.
    again = await harness.join("s2", SPEAKER)
    assert [q["id"] for q in again.of("question")] == [question["id"]]


@pytest.mark.parametrize(("frame", "code"), [
    ("{", "invalid_json"),
    ('{"type": "raise_hand"}', "not_joined"),
    ('{"type": "fly"}', "unknown_type"),
])
async def test_refusals_before_joining(harness: Harness, frame: str, code: str) -> None:
    connection = FakeConnection("c")
    await harness.room.handle(connection, MEMBER, frame)
    assert connection.last("error")["code"] == code


def test_the_token_bucket_allows_a_burst_then_the_sustained_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(burst=40, rate=20, clock=lambda: now[0])
    assert sum(bucket.allow() for _ in range(100)) == 40
    now[0] += 0.5  # ten more
    assert sum(bucket.allow() for _ in range(100)) == 10
    now[0] += 60  # a quiet minute refills the burst, never more
    assert sum(bucket.allow() for _ in range(100)) == 40


async def test_the_rate_limit_refuses_a_flood_and_the_socket_stays(harness: Harness) -> None:
    member = await harness.join("m", MEMBER)
    for _ in range(60):
        await harness.send(member, MEMBER, "ping")
    assert member.last("error")["code"] == "rate_limited"
    assert len(member.of("pong")) < 60
    served = len(member.of("pong"))

    async def ping_served() -> bool:
        await harness.send(member, MEMBER, "ping", t=1)
        return len(member.of("pong")) > served

    for _ in range(100):
        if await ping_served():
            break
        await asyncio.sleep(0.05)
    assert member.last("pong") == {"type": "pong", "t": 1}


async def test_a_flood_of_garbage_is_rate_limited_too(harness: Harness) -> None:
    stranger = FakeConnection("x")
    for _ in range(60):
        await harness.room.handle(stranger, MEMBER, "not json")
    codes = [m["code"] for m in stranger.of("error")]
    assert codes.count("invalid_json") <= 45 and "rate_limited" in codes


async def test_a_failing_subscriber_does_not_stop_the_room(harness: Harness,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    async def broken(event: ev.Event) -> None:
        raise RuntimeError("disk full")

    harness.bus.subscribe(broken, session_id=9, name="broken")
    host = await harness.join("s", SPEAKER)
    hall = await harness.join("h", HALL_HP)
    with caplog.at_level(logging.ERROR):
        await harness.send(host, SPEAKER, "grant_floor", point_id=HP)
    assert hall.last("floor_granted") is not None
    assert "broken" in caplog.text


async def test_start_and_end_tell_everyone_and_end_closes_the_room() -> None:
    harness = Harness(status=SessionStatus.SCHEDULED)
    host = await harness.join("s", SPEAKER)
    hall = await harness.join("h", HALL_HP)
    await harness.send(hall, HALL_HP, "start")
    assert hall.last("error")["code"] == "forbidden"
    await harness.send(host, SPEAKER, "start")
    assert hall.last("session")["status"] == "live" and harness.room.media.feed.video.enabled
    await harness.send(host, SPEAKER, "start")
    assert host.last("error")["code"] == "invalid_status"
    await harness.send(host, SPEAKER, "end")
    assert hall.last("session")["status"] == "ended"
    await asyncio.wait_for(harness.closed.wait(), 5)
    assert hall.closed == (1000, "the session has ended")
    kinds = harness.kinds()
    assert [k for k in kinds if not k.startswith("endpoint_")][-2:] == ["session_started", "session_ended"]
    # The room closing ends every endpoint still open: attendance closes their intervals.
    assert kinds[-2:] == ["endpoint_left", "endpoint_left"]


async def test_a_peer_connection_closing_by_itself_during_a_disconnect_leaves_no_ghost(harness: Harness) -> None:
    from server.media.room import EndpointState

    host = await harness.join("s", SPEAKER)
    hall = await harness.join("h", HALL_HP)
    member = harness.room.members.get("h")
    assert member is not None
    # The hall's two peer connections (as the media room knows them).
    member.endpoints.update({"view": "e-view", "publish": "e-publish"})
    harness.room.owners.update({"e-view": member, "e-publish": member})
    closed: list[str] = []

    async def close_endpoint(endpoint_id: str) -> None:
        closed.append(endpoint_id)
        # While the first closes, the browser's other connection fails by itself.
        other = "e-publish" if endpoint_id == "e-view" else "e-view"
        harness.room._media_changed(EndpointState(other, "point:11", "publish", False, True))
        await asyncio.sleep(0)

    harness.room.media.close_endpoint = close_endpoint  # type: ignore[method-assign]
    await harness.room.disconnect(hall, dropped=True)
    await settle()
    assert sorted(closed) == ["e-publish", "e-view"]
    assert harness.room.session.roster.by_point(HP).connected is False
    assert "endpoint_dropped" in harness.kinds()
    await wait_until(lambda: host.last("roll_call") is not None
                     and {p["point_id"]: p["state"] for p in host.last("roll_call")["points"]}[HP] == "reconnecting")


async def test_a_join_that_could_not_be_recorded_gets_no_welcome_and_leaves(harness: Harness) -> None:
    host = await harness.join("s", SPEAKER)
    failing = asyncio.get_running_loop().create_future()
    failing.set_exception(OSError("no space left on device"))

    async def unrecordable(event: ev.Event) -> Any:
        # Like attendance when the database is away and its spool cannot be written.
        return failing if isinstance(event, ev.EndpointJoined) else None

    harness.bus.subscribe(unrecordable, name="unrecordable")
    hall = FakeConnection("h")
    await harness.send(hall, HALL_HP, "join")
    assert [m["type"] for m in hall.received] == ["error"] and hall.received[0]["code"] == "try_again"
    assert hall.closed is not None and hall.closed[0] == 1013
    # Taken back: nobody sees a ghost hall, and the endpoint's join is followed by its leave.
    assert harness.room.session.participant_of("h") is None
    assert [e.kind for e in harness.events if getattr(e, "endpoint_id", None) == "h"] == [
        "endpoint_joined", "endpoint_left"]
    assert host.last("error") is None
