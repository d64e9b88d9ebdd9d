"""A hall's websocket lost for 5 s and for 30 s (past the 20 s reconnect grace), and one that just goes dark.

Each hall reaches the server through a :class:`~tests.faults.links.Gate` of
its own, broken at the same instant, so the three cases share one 30 s wait:

* **5 s, within the grace.** The server's end of the socket is reset (no
  close frame), the hall's own end goes silent, new connections are refused;
  5 s later the hall connects again. It is the same participant (its roster
  key, one roster entry, one connection), it kept its raised hand and its
  place, and the presence log has its first interval closed by a ``drop`` at
  the cut and a new ``join`` at the return: a 5 s gap in its connected time.
* **30 s, past the grace.** The same cut while it holds the floor: reconnecting
  for 20 s, then its floor ends (``dropped``, stored) and it is lost; back
  after 30 s it is the same participant again, and the report's connected
  time has the 30 s hole, and so has the credit of a member checked in there.
* **Dark.** Both ends stay open and nothing passes (a pulled cable): the
  server finds out by its websocket heartbeat (20 s, then 10 s for the pong),
  and the interval is closed then. Measured, and bounded by those timers.

The server is the in-process application on SQLite (presence is the same
code on PostgreSQL; ``tests/attendance`` runs both backends).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy import select

from server import keys
from server.app import create_app
from server.attendance.rule import CreditRule
from server.live import events as ev
from server.storage.attendance import session_report
from server.storage.db import Database
from server.storage.models import FloorGrant, PresenceEvent
from tests.conftest import Seed, bearer, make_settings
from tests.faults.links import Gate
from tests.media.clients import wait_until
from tests.signaling.helpers import OPENED, LiveClient, add_halls, add_session, connect

SHORT = 5.0
LONG = 30.0


async def join_through(http: aiohttp.ClientSession, gate: Gate, app: Any, session_id: int, user: Any) -> LiveClient:
    """A hall's socket through ``gate``, joined and welcomed."""
    ws = await http.ws_connect(f"{gate.url}/ws/sessions/{session_id}", headers=bearer(app, user))
    live = LiveClient(ws)
    OPENED.append(live)
    await live.send("join")
    await live.expect("welcome")
    return live


def _state(speaker: LiveClient, point_id: int) -> str | None:
    roll = speaker.last("roll_call")
    return next((p["state"] for p in (roll or {}).get("points", []) if p["point_id"] == point_id), None)


def _roster_entries(speaker: LiveClient, key: str) -> list[dict[str, Any]]:
    roster = speaker.last("roster") or {}
    return [p for p in roster.get("participants", []) if p["key"] == key]


def _gaps(rows: list[PresenceEvent]) -> list[tuple[datetime, datetime]]:
    """The holes in a participant's connected time, from its presence rows (the report's own pairing)."""
    open_: dict[str, datetime] = {}
    intervals: list[tuple[datetime, datetime]] = []
    for row in sorted(rows, key=lambda r: (r.at, r.kind != "join")):
        if row.kind == "join":
            open_[row.endpoint_id] = row.at
        elif row.endpoint_id in open_:
            intervals.append((open_.pop(row.endpoint_id), row.at))
    intervals.sort()
    holes, reach = [], intervals[0][1]
    for start, end in intervals[1:]:
        if start > reach:
            holes.append((reach, start))
        reach = max(reach, end)
    return holes


async def test_a_hall_lost_for_5_s_and_for_30_s_comes_back_as_itself_with_the_gap_on_record(
        aiohttp_client: Any, settings: Any, seed: Seed, sqlite_database: Database, password_hash: str) -> None:
    database = sqlite_database
    app = create_app(make_settings(settings.data_dir, ice={"addresses": "127.0.0.1"}))
    client = await aiohttp_client(app)
    grace = app[keys.SETTINGS].live.reconnect_grace_seconds
    assert grace == 20 and SHORT < grace < LONG
    (point_a, op_a), (point_b, op_b), (point_c, op_c) = await add_halls(database, seed, 3, password_hash)
    session_id = await add_session(database, seed, [point_a.id, point_b.id, point_c.id])
    key_a, key_b, key_c = (ev.hall_key(p.id) for p in (point_a, point_b, point_c))

    speaker = await connect(client, session_id, seed.speaker)  # the hub's console: its own path, never cut
    await speaker.send("start")
    await speaker.expect("session", status="live")
    gates = {key: await Gate("127.0.0.1", client.server.port).start() for key in (key_a, key_b, key_c)}
    http = aiohttp.ClientSession()
    try:
        hall_a = await join_through(http, gates[key_a], app, session_id, op_a)
        hall_b = await join_through(http, gates[key_b], app, session_id, op_b)
        hall_c = await join_through(http, gates[key_c], app, session_id, op_c)
        # B holds the floor; A waits with its hand up.
        await speaker.send("grant_floor", point_id=point_b.id, limit_seconds=600)
        await hall_b.expect("floor_granted")
        await hall_a.send("raise_hand")
        await speaker.expect("floor", queue=[{"point_id": point_a.id, "name": point_a.name}])
        # A member checks in at hall B with the code on its screen.
        code = await (await client.get(f"/api/v1/sessions/{session_id}/checkin-code",
                                       headers=bearer(app, op_b))).json()
        checked = await client.post("/api/v1/checkins", json={"code": code["code"]}, headers=bearer(app, seed.member))
        assert checked.status == 201, await checked.text()
        # C's last word before the dark: the server's heartbeat counts from here.
        mark = hall_c.mark()
        await hall_c.send("ping", t=1)
        await hall_c.expect("pong", since=mark)
        await asyncio.sleep(1.0)

        cut_at, cut_mono = datetime.now(UTC), time.monotonic()
        gates[key_a].reset()
        gates[key_b].reset()
        gates[key_c].blackhole()

        # Reset: the server knows at once. A and B are "reconnecting"; B keeps the floor for now.
        await wait_until(lambda: _state(speaker, point_a.id) == "reconnecting"
                         and _state(speaker, point_b.id) == "reconnecting", timeout=3)
        floor = speaker.last("floor")
        assert floor["holder"]["point_id"] == point_b.id and floor["holder"]["reconnecting"] is True
        assert _state(speaker, point_c.id) == "connected"  # dark: nobody has told the server yet
        noticed = time.monotonic() - cut_mono
        # A new connection meanwhile goes nowhere.
        try:
            await http.ws_connect(f"{gates[key_a].url}/ws/sessions/{session_id}", headers=bearer(app, op_a),
                                  timeout=aiohttp.ClientWSTimeout(ws_close=2))
            raise AssertionError("a connection got through a gate that is down")
        except (aiohttp.ClientError, ConnectionError):
            pass

        # A is back after 5 s: itself, its hand still up, not a second participant.
        await asyncio.sleep(max(0.0, cut_mono + SHORT - time.monotonic()))
        gates[key_a].restore()
        back_a_mono = time.monotonic()
        hall_a2 = await join_through(http, gates[key_a], app, session_id, op_a)
        welcome = hall_a2.received[0]
        assert welcome["you"]["key"] == key_a and welcome["you"]["point_id"] == point_a.id
        assert [q["point_id"] for q in welcome["floor"]["queue"]] == [point_a.id]
        await wait_until(lambda: _state(speaker, point_a.id) == "connected", timeout=3)
        await wait_until(lambda: [(p["connected"], p["connections"]) for p in _roster_entries(speaker, key_a)]
                         == [(True, 1)], timeout=3)

        # Past the grace, B's floor ends as dropped and it is lost; A (back) keeps its place.
        ended = await speaker.expect("floor_ended", timeout=grace + 5, point_id=point_b.id)
        lost_after = time.monotonic() - cut_mono
        assert ended["reason"] == "dropped"
        assert grace - 0.5 <= lost_after <= grace + 3, lost_after
        await wait_until(lambda: _state(speaker, point_b.id) == "not_connected", timeout=3)
        assert [q["point_id"] for q in speaker.last("floor")["queue"]] == [point_a.id]

        # B is back after 30 s: the same participant, one roster entry, no floor.
        await asyncio.sleep(max(0.0, cut_mono + LONG - time.monotonic()))
        gates[key_b].restore()
        back_b_mono = time.monotonic()
        hall_b2 = await join_through(http, gates[key_b], app, session_id, op_b)
        welcome = hall_b2.received[0]
        assert welcome["you"]["key"] == key_b and welcome["floor"]["holder"] is None
        await wait_until(lambda: [(p["connected"], p["connections"]) for p in _roster_entries(speaker, key_b)]
                         == [(True, 1)], timeout=3)
        await wait_until(lambda: _state(speaker, point_b.id) == "connected", timeout=3)
        # It can ask for the floor again like any hall.
        mark = speaker.mark()
        await hall_b2.send("raise_hand")
        await speaker.expect("floor", since=mark, timeout=5,
                             queue=[{"point_id": point_a.id, "name": point_a.name},
                                    {"point_id": point_b.id, "name": point_b.name}])

        # The dark socket: the server's heartbeat finds it (a ping after 20 s quiet, 10 s for the pong).
        await wait_until(lambda: _state(speaker, point_c.id) == "reconnecting", timeout=15)
        dark_noticed = time.monotonic() - cut_mono

        await speaker.send("end")
        await speaker.expect("session", status="ended")
        await wait_until(lambda: hall_a2.closed_code is not None and hall_b2.closed_code is not None, timeout=10)
        print(f"\nsocket drops: reset noticed by the server in {noticed:.2f} s; B lost {lost_after:.1f} s after "
              f"the cut (grace {grace} s); a dark socket noticed after {dark_noticed:.1f} s; "
              f"A back at +{back_a_mono - cut_mono:.1f} s, B at +{back_b_mono - cut_mono:.1f} s")
    finally:
        for live in list(OPENED):
            live._reader.cancel()
        for gate in gates.values():
            await gate.close()
        await http.close()

    presence = app[keys.PRESENCE]
    await wait_until(lambda: presence.queued == 0, timeout=10)
    async with database.session() as db:
        rows = list(await db.scalars(select(PresenceEvent).where(PresenceEvent.session_id == session_id)))
        grants = list(await db.scalars(select(FloorGrant).where(FloorGrant.session_id == session_id)))
        report = await session_report(db, session_id, CreditRule())
    by_key = {key: sorted((r for r in rows if r.participant_key == key), key=lambda r: r.at)
              for key in (key_a, key_b, key_c)}
    # One participant each, every interval closed: join, drop (the cut), join (the return), leave (the end).
    for key in (key_a, key_b):
        assert [r.kind for r in by_key[key]] == ["join", "drop", "join", "leave"], [r.kind for r in by_key[key]]
        assert len({r.endpoint_id for r in by_key[key]}) == 2
    assert [r.kind for r in by_key[key_c]] == ["join", "drop"]
    tolerance = timedelta(seconds=1.5)
    for key, away in ((key_a, SHORT), (key_b, LONG)):
        _, drop, rejoin, _ = by_key[key]
        assert cut_at <= drop.at <= cut_at + tolerance, (key, drop.at, cut_at)
        assert rejoin.at >= cut_at + timedelta(seconds=away)
        [(gap_start, gap_end)] = _gaps(by_key[key])
        gap = (gap_end - gap_start).total_seconds()
        assert away - 0.5 <= gap <= away + 3, (key, gap)
        print(f"  {key}: drop at +{(drop.at - cut_at).total_seconds():.2f} s, back at "
              f"+{(rejoin.at - cut_at).total_seconds():.2f} s: a gap of {gap:.2f} s on record")
    dark_drop = by_key[key_c][1]
    dark_after = (dark_drop.at - cut_at).total_seconds()
    assert 18 <= dark_after <= 36, dark_after  # the heartbeat's 20 s plus its 10 s pong wait (and a busy machine)
    # The floor B lost: stored, ended as dropped when the grace ran out.
    [grant] = grants
    assert grant.bridge_point_id == point_b.id and grant.end_reason == "dropped"
    assert grant.ended_at is not None and abs((grant.ended_at - cut_at).total_seconds() - grace) < 3

    # The report: each hall's connected time has its hole; the member checked in at B loses B's.
    assert report.live_start is not None and report.live_end is not None
    live = (report.live_end - report.live_start).total_seconds()
    points = {p.bridge_point_id: p for p in report.points}
    joined = {key: (by_key[key][0].at - report.live_start).total_seconds() for key in (key_a, key_b)}
    assert abs(points[point_a.id].connected_seconds - (live - joined[key_a] - SHORT)) <= 3, points[point_a.id]
    assert abs(points[point_b.id].connected_seconds - (live - joined[key_b] - LONG)) <= 3, points[point_b.id]
    member = next(m for m in report.members if m.user_id == seed.member.id)
    assert member.checked_in and member.hall_seconds < points[point_b.id].connected_seconds + 1
    assert member.hall_seconds <= live - LONG + 1, (member.hall_seconds, live)
    print(f"  report: live {live:.0f} s, A connected {points[point_a.id].connected_seconds} s, "
          f"B {points[point_b.id].connected_seconds} s, the member checked in at B credited "
          f"{member.hall_seconds} s in the hall")
