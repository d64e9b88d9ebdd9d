"""Connection presence: every join, leave and drop on record, once, before the client is welcomed."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from server.app import create_app
from server.attendance import intervals as iv
from server.config import Settings
from server.live import events as ev
from server.live.bus import InMemoryEventBus
from server.live.events import LiveRole, ParticipantRef
from server.live.lifecycle import SessionStatus
from server.storage.db import Database
from server.storage.models import NodeHeartbeat, PresenceEvent
from server.storage.presence import SPOOL_NAME, PresenceRecorder
from tests.conftest import Seed, make_settings, seed_database
from tests.media.clients import wait_until
from tests.signaling.helpers import add_session, connect


def _joined(session_id: int, user_id: int, endpoint: str, at: datetime | None = None) -> ev.EndpointJoined:
    ref = ParticipantRef(key=ev.user_key(user_id), role=LiveRole.MEMBER, user_id=user_id, point_id=None,
                         display_name="M")
    return ev.make(ev.EndpointJoined, session_id=session_id, endpoint_id=endpoint, endpoint_kind="socket",
                   participant=ref, first=True, **({"at": at} if at else {}))


def _left(session_id: int, user_id: int, endpoint: str, cls: type = ev.EndpointLeft) -> Any:
    ref = ParticipantRef(key=ev.user_key(user_id), role=LiveRole.MEMBER, user_id=user_id, point_id=None,
                         display_name="M")
    return ev.make(cls, session_id=session_id, endpoint_id=endpoint, endpoint_kind="socket", participant=ref,
                   last=True)


async def _rows(database: Database, session_id: int | None = None) -> list[PresenceEvent]:
    async with database.session() as db:
        query = select(PresenceEvent).order_by(PresenceEvent.id)
        if session_id is not None:
            query = query.where(PresenceEvent.session_id == session_id)
        return list(await db.scalars(query))


@pytest.fixture
async def seeded(database: Database, password_hash: str) -> tuple[Database, Seed, int]:
    seed = await seed_database(database, password_hash)
    session_id = await add_session(database, seed, [seed.point_a.id], SessionStatus.LIVE)
    return database, seed, session_id


async def test_the_same_event_delivered_twice_is_stored_once(seeded: tuple[Database, Seed, int],
                                                             tmp_path: Path) -> None:
    database, seed, session_id = seeded
    recorder = PresenceRecorder(database, spool_dir=tmp_path)
    bus = InMemoryEventBus()
    recorder.subscribe(bus)
    await recorder.start()
    joined = _joined(session_id, seed.member.id, "tab-1")
    for _ in range(2):
        await (await bus.publish([joined])).settled()
    # A leave whose join was never seen is kept too (a report ignores it).
    await (await bus.publish([_left(session_id, seed.member.id, "never-joined", ev.EndpointDropped)])).settled()
    await recorder.stop()
    rows = await _rows(database, session_id)
    assert [(r.event_id, r.kind, r.endpoint_id) for r in rows] == [
        (joined.id, "join", "tab-1"), (rows[1].event_id, "drop", "never-joined")]
    assert rows[0].participant_key == f"user:{seed.member.id}" and rows[0].user_id == seed.member.id
    # The database decides, not Python: a second insert of the same id is refused by the unique constraint.
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        async with database.session() as db:
            db.add(PresenceEvent(event_id=joined.id, session_id=session_id, at=joined.at, kind="join",
                                 endpoint_id="x", endpoint_kind="socket", participant_key="user:1", role="member"))


async def test_a_restart_closes_what_a_killed_server_left_open_at_its_last_heartbeat(
        seeded: tuple[Database, Seed, int], tmp_path: Path) -> None:
    database, seed, session_id = seeded
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    beat = start + timedelta(minutes=7)
    recorder = PresenceRecorder(database, spool_dir=tmp_path)
    await recorder._insert([{**_row(session_id, seed.member.id, "open", "join", start), "event_id": "j1"},
                            {**_row(session_id, seed.member.id, "done", "join", start), "event_id": "j2"},
                            {**_row(session_id, seed.member.id, "done", "leave", beat), "event_id": "l2"},
                            # Joined after the last heartbeat: closed where it began, not left open.
                            {**_row(session_id, seed.member.id, "late", "join", beat + timedelta(seconds=3)),
                             "event_id": "j4"},
                            # Another node's endpoint is that node's to close.
                            {**_row(session_id, seed.member.id, "elsewhere", "join", start), "event_id": "j3",
                             "node": "relay-1"}])
    async with database.session() as db:
        db.add(NodeHeartbeat(node="hub", at=beat))
    for _ in range(2):  # a second recovery adds nothing
        await PresenceRecorder(database, spool_dir=tmp_path).recover()
    rows = await _rows(database, session_id)
    stops = sorted((r.endpoint_id, r.at, r.event_id) for r in rows if r.kind == "server_stop")
    assert stops == [("late", beat + timedelta(seconds=3), "stop:j4"), ("open", beat, "stop:j1")]
    # What the report makes of it: the open endpoint until the heartbeat, the late one nothing.
    events = [(r.endpoint_id, "join" if r.kind == "join" else "end", r.at.timestamp()) for r in rows
              if r.node == "hub"]
    assert iv.pair(events, open_until=(beat + timedelta(hours=1)).timestamp()) == [
        (start.timestamp(), beat.timestamp())]


def _row(session_id: int, user_id: int, endpoint: str, kind: str, at: datetime) -> dict[str, Any]:
    return {"session_id": session_id, "at": at, "kind": kind, "endpoint_id": endpoint, "endpoint_kind": "socket",
            "participant_key": f"user:{user_id}", "role": "member", "user_id": user_id, "bridge_point_id": None,
            "node": "hub"}


async def test_a_database_that_does_not_answer_sends_joins_to_the_spool_and_they_are_written_later(
        seeded: tuple[Database, Seed, int], tmp_path: Path) -> None:
    database, seed, session_id = seeded
    # Nothing listens on port 9 of 127.0.0.1: every write fails at once.
    dead = Database("postgresql+asyncpg://postgres@127.0.0.1:9/none")
    recorder = PresenceRecorder(dead, spool_dir=tmp_path, write_timeout=0.3)
    bus = InMemoryEventBus()
    recorder.subscribe(bus)
    recorder._tasks = [asyncio.create_task(recorder._writer())]  # no recovery: that database is gone
    events = [_joined(session_id, seed.member.id, f"tab-{i}") for i in range(3)]
    began = time.monotonic()
    for event in events:
        await (await bus.publish([event])).settled()
    # Acknowledged (durable in the spool) within the write timeout, not left hanging.
    assert time.monotonic() - began < 3
    spool = tmp_path / SPOOL_NAME
    assert spool.read_text().count("\n") == 3 and recorder.spooled == 3
    assert recorder.queued == 3 and not recorder.database_ok
    # The database comes back: the queue is written, the spool replayed (nothing twice), then removed.
    recorder.database = database
    await wait_until(lambda: recorder.queued == 0 and not spool.exists(), timeout=15)
    assert recorder.database_ok
    assert sorted(r.event_id for r in await _rows(database, session_id)) == sorted(e.id for e in events)
    await recorder.stop()
    await dead.close()


# Through the application: the websocket and the room -----------------------------------------------

@pytest.fixture
def app_settings(settings: Settings) -> Settings:
    return make_settings(settings.data_dir, ice={"addresses": "127.0.0.1"})


async def test_a_welcome_waits_until_the_join_is_on_record(aiohttp_client: Any, app_settings: Settings,
                                                           sqlite_database: Database, password_hash: str) -> None:
    seed = await seed_database(sqlite_database, password_hash)
    session_id = await add_session(sqlite_database, seed, [seed.point_a.id], SessionStatus.LIVE)
    client = await aiohttp_client(create_app(app_settings))
    # Another process holds the database's write lock for a second: the join cannot be written meanwhile.
    path = app_settings.effective_database_url.split("///", 1)[1]
    blocker = sqlite3.connect(path, timeout=5, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    release = asyncio.get_running_loop().call_later(1.0, blocker.commit)
    began = time.monotonic()
    member = await connect(client, session_id, seed.member)
    waited = time.monotonic() - began
    release.cancel()
    blocker.close()
    assert waited >= 0.9, f"welcomed after {waited:.2f} s, before its join could be written"
    rows = await _rows(sqlite_database, session_id)
    assert [(r.kind, r.participant_key, r.endpoint_kind) for r in rows] == [("join", f"user:{seed.member.id}",
                                                                            "socket")]
    # A second tab is a second endpoint of the same participant; the room closing ends both.
    await connect(client, session_id, seed.member)
    await member.send("leave")
    await wait_until(lambda: member.closed_code is not None, timeout=5)
    await client.close()
    rows = await _rows(sqlite_database, session_id)
    assert sorted(r.kind for r in rows) == ["join", "join", "leave", "leave"]
    assert len({r.endpoint_id for r in rows}) == 2


async def test_a_member_watching_on_a_whep_player_and_a_tab_is_one_person_credited_once(
        aiohttp_client: Any, app_settings: Settings, sqlite_database: Database, password_hash: str) -> None:
    from server.attendance.rule import CreditRule
    from server.storage.attendance import session_report
    from tests.media.clients import view
    from tests.signaling.test_whip_whep import http_answerer
    from tests.conftest import bearer

    seed = await seed_database(sqlite_database, password_hash)
    client = await aiohttp_client(create_app(app_settings))
    session_id = await add_session(sqlite_database, seed, [seed.point_a.id])
    console = await connect(client, session_id, seed.admin)
    await console.send("start")
    await console.expect("session", status="live")
    tab = await connect(client, session_id, seed.member)
    resources: list[str] = []
    player = await view(http_answerer(client, f"/whep/sessions/{session_id}", bearer(client.app, seed.member),
                                      resources))
    try:
        rows = await _rows(sqlite_database, session_id)
        # The WHEP resource was answered after its join was on record.
        assert ("join", "whep", f"user:{seed.member.id}") in {(r.kind, r.endpoint_kind, r.participant_key)
                                                               for r in rows}
        await asyncio.sleep(2.0)
        assert (await client.delete(resources[0], headers=bearer(client.app, seed.member))).status == 200
        await asyncio.sleep(1.0)
        async with sqlite_database.session() as db:
            report = await session_report(db, session_id, CreditRule())
        rows = await _rows(sqlite_database, session_id)
        tab_join = next(r.at for r in rows if r.endpoint_kind == "socket" and r.participant_key.endswith(
            f":{seed.member.id}"))
        player_rows = [r.at for r in rows if r.endpoint_kind == "whep"]
        player_seconds = (player_rows[1] - player_rows[0]).total_seconds()
        tab_seconds = (report.generated_at - tab_join).total_seconds()
        assert player_seconds >= 2
        mine = [m for m in report.members if m.username == seed.member.username]
        assert len(mine) == 1
        # The player's time lies inside the tab's: the union is the tab's time, never the sum.
        assert abs(mine[0].online_seconds - tab_seconds) <= 1, (mine[0].online_seconds, tab_seconds)
        assert mine[0].live_seconds == mine[0].online_seconds
    finally:
        await player.close()
        await tab.close()
        await console.close()


async def test_a_second_process_with_the_same_node_name_refuses_to_start(
        seeded: tuple[Database, Seed, int], tmp_path: Path) -> None:
    database, seed, session_id = seeded
    # A beat a second: this test runs at a low priority beside the timed ones, and a beat 0.2 s apart
    # came more than two intervals late there (the second process then rightly took the first for dead).
    running = PresenceRecorder(database, spool_dir=tmp_path / "a", heartbeat_seconds=1.0)
    bus = InMemoryEventBus()
    running.subscribe(bus)
    await running.start()
    await (await bus.publish([_joined(session_id, seed.member.id, "still-here")])).settled()
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="node_name"):
        await PresenceRecorder(database, spool_dir=tmp_path / "b", heartbeat_seconds=1.0).recover()
    assert time.monotonic() - began < 4
    # The running process's endpoint was not closed by the one that refused.
    assert [r.kind for r in await _rows(database, session_id)] == ["join"]
    await running.stop()
    # Stopped cleanly: its heartbeat is gone, and the next start does not wait.
    began = time.monotonic()
    await PresenceRecorder(database, spool_dir=tmp_path / "b", heartbeat_seconds=5).recover()
    assert time.monotonic() - began < 2


async def test_a_row_the_database_refuses_is_set_aside_and_the_others_are_written(
        seeded: tuple[Database, Seed, int], tmp_path: Path) -> None:
    database, seed, session_id = seeded
    recorder = PresenceRecorder(database, spool_dir=tmp_path)
    bus = InMemoryEventBus()
    recorder.subscribe(bus)
    await recorder.start()
    good = [_joined(session_id, seed.member.id, f"tab-{i}") for i in range(2)]
    # A session that does not exist (its foreign key fails): one bad row among good ones.
    bad = _joined(session_id + 1000, seed.member.id, "nowhere")
    delivery = await bus.publish([good[0], bad, good[1]])
    assert await delivery.settled()
    await wait_until(lambda: recorder.queued == 0, timeout=10)
    assert recorder.database_ok and recorder.rejected == 1
    assert sorted(r.event_id for r in await _rows(database)) == sorted(e.id for e in good)
    assert bad.id in (tmp_path / "presence-rejected.jsonl").read_text()
    await recorder.stop()
