"""Attendance reports at scale: a session of 10,000 members, and a unit over a year of weekly sessions.

    python -m bench.attendance [--members 10000] [--weeks 52] [--runs 5] [--no-pg] [--no-doc]

The data is generated directly in the database (no server): 9 provinces of
10 communes each, one hall per province, ``--members`` members spread over
the communes. The big session was live for an hour: 60 % of the members
joined online (a third of them with two tabs, a tenth with a reconnect), 25 %
checked in at their hall, the rest stayed away; every hall was connected and
held the floor once. ``--weeks`` earlier weekly sessions of the year have
their records kept (one ``attendance_records`` row per member and session),
as the record keeper leaves them.

Measured on a fresh SQLite file and on a throwaway PostgreSQL database
(``BRIDGECAST_TEST_PG_URL`` or 127.0.0.1:5432/test, created under a unique
name and dropped after), the median of ``--runs`` runs of each:

* the session report (every member with their credit, the points) and its
  JSON, CSV and XLSX forms;
* writing the session's records (what happens when it ends, or is corrected);
* the unit report of the centre and of one province over the year (the
  first run also writes the big session's missing records: timed apart);
* one member's history.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import RESULTS, machine, write_section
from server.attendance import export
from server.attendance.rule import CreditRule
from server.auth.roles import Role
from server.i18n import Catalogues
from server.live.lifecycle import SessionStatus
from server.storage.attendance import refresh_records, session_report
from server.storage.db import Database, upgrade
from server.storage.models import (
    AttendanceRecord,
    BridgePoint,
    Checkin,
    FloorGrant,
    PresenceEvent,
    Session,
    SessionInvite,
    Unit,
    User,
)
from server.storage.reports import member_history, unit_report

ZONE = dt.timezone(dt.timedelta(hours=7))
RULE = CreditRule()
PG_URL = os.environ.get("BRIDGECAST_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
CHUNK = 5000


async def _insert(database: Database, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        async with database.session() as db:
            await db.execute(table.__table__.insert(), rows[start:start + CHUNK])


async def generate(database: Database, members: int, weeks: int) -> dict[str, int]:
    """The data set; returns the ids the measurements need."""
    rnd = random.Random(9)
    start = dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.UTC)
    async with database.session() as db:
        central = Unit(name="Trung ương", slug="trung-uong", level="central")
        db.add(central)
        await db.flush()
        provinces = [Unit(name=f"Tỉnh {i + 1}", slug=f"tinh-{i + 1}", level="province", parent_id=central.id)
                     for i in range(9)]
        db.add_all(provinces)
        await db.flush()
        communes = [Unit(name=f"Xã {p.id}-{j + 1}", slug=f"xa-{p.id}-{j + 1}", level="commune", parent_id=p.id)
                    for p in provinces for j in range(10)]
        points = [BridgePoint(name=f"Điểm cầu {p.name}", slug=f"diem-{p.slug}", unit_id=p.id) for p in provinces]
        db.add_all([*communes, *points])
        await db.flush()
        session = Session(title="Học tập Nghị quyết", scheduled_start=start, scheduled_end=start + dt.timedelta(hours=2),
                          actual_start=start, actual_end=start + dt.timedelta(hours=1), status=SessionStatus.ENDED)
        session.invites = [SessionInvite(bridge_point_id=p.id) for p in points]
        db.add(session)
        await db.flush()
        ids = {"central": central.id, "province": provinces[0].id, "session": session.id}
        point_of_province = {p.unit_id: p.id for p in points}
        commune_rows = [(c.id, c.parent_id) for c in communes]
    users = [{"username": f"hv-{i:05d}", "full_name": f"Học viên {i:05d}", "role": Role.MEMBER.value,
              "unit_id": commune_rows[i % len(commune_rows)][0], "password_hash": "x", "active": True,
              "token_version": 1, "email": "", "created_at": start} for i in range(members)]
    await _insert(database, User, users)
    async with database.session() as db:
        user_rows = (await db.execute(User.__table__.select().with_only_columns(User.id, User.unit_id))).all()
    province_of = dict(commune_rows)
    sid = ids["session"]
    presence: list[dict[str, Any]] = []
    checkins: list[dict[str, Any]] = []

    def event(key: str, endpoint: str, kind: str, second: float, user_id: int | None, point_id: int | None) -> None:
        presence.append({"event_id": uuid.uuid4().hex, "session_id": sid, "at": start + dt.timedelta(seconds=second),
                         "kind": kind, "endpoint_id": endpoint, "endpoint_kind": "socket", "participant_key": key,
                         "role": "hall" if point_id else "member", "user_id": user_id, "bridge_point_id": point_id,
                         "node": "hub"})

    for point_id in point_of_province.values():
        event(f"point:{point_id}", f"hall-{point_id}", "join", -1800, None, point_id)
        event(f"point:{point_id}", f"hall-{point_id}", "leave", 3600, None, point_id)
    for user_id, unit_id in user_rows:
        draw = rnd.random()
        if draw < 0.60:
            join = rnd.choice([-120, 0, 60, 400, 900])
            leave = rnd.choice([3600, 3600, 3300, 2400])
            event(f"user:{user_id}", f"u{user_id}-a", "join", join, user_id, None)
            event(f"user:{user_id}", f"u{user_id}-a", "leave", leave, user_id, None)
            if draw < 0.20:
                event(f"user:{user_id}", f"u{user_id}-b", "join", join + 300, user_id, None)
                event(f"user:{user_id}", f"u{user_id}-b", "leave", leave - 300, user_id, None)
            if draw < 0.06:
                event(f"user:{user_id}", f"u{user_id}-c", "join", leave + 60, user_id, None)
                event(f"user:{user_id}", f"u{user_id}-c", "drop", 3600, user_id, None)
        elif draw < 0.85:
            checkins.append({"session_id": sid, "user_id": user_id, "bridge_point_id":
                             point_of_province[province_of[unit_id]], "checked_in_at": start, "source": "qr"})
    await _insert(database, PresenceEvent, presence)
    await _insert(database, Checkin, checkins)
    async with database.session() as db:
        db.add_all([FloorGrant(session_id=sid, bridge_point_id=point_id, started_at=start + dt.timedelta(minutes=40),
                               ended_at=start + dt.timedelta(minutes=42)) for point_id in point_of_province.values()])
        # The year's earlier weekly sessions, ended, with their records kept.
        history = []
        for week in range(1, weeks):
            begin = start - dt.timedelta(weeks=week)
            history.append(Session(title=f"Chuyên đề {week}", scheduled_start=begin,
                                   scheduled_end=begin + dt.timedelta(hours=2), actual_start=begin,
                                   actual_end=begin + dt.timedelta(hours=1), status=SessionStatus.ENDED))
        db.add_all(history)
        await db.flush()
        history_ids = [s.id for s in history]
    statuses = ("attended", "attended", "attended", "partial", "absent")
    for session_id in history_ids:
        records = []
        for user_id, unit_id in user_rows:
            status = statuses[(user_id + session_id) % 5]
            credited = {"attended": 3300, "partial": 1800, "absent": 0}[status]
            records.append({"session_id": session_id, "user_id": user_id, "unit_id": unit_id,
                            "bridge_point_id": point_of_province[province_of[unit_id]], "live_seconds": credited,
                            "replay_seconds": 0, "credited_seconds": credited, "status": status,
                            "late_minutes": 0, "early_minutes": 0, "checked_in": False, "corrected": False,
                            "computed_at": start})
        await _insert(database, AttendanceRecord, records)
    ids["member"] = user_rows[0][0]
    ids["presence_rows"] = len(presence)
    ids["record_rows"] = len(history_ids) * len(user_rows)
    return ids


async def timed(work: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, Any]:
    """Median seconds over ``runs``, and the last result."""
    times, result = [], None
    for _ in range(runs):
        began = time.perf_counter()
        result = await work()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


async def measure(url: str, members: int, weeks: int, runs: int) -> dict[str, Any]:
    database = Database(url)
    try:
        began = time.perf_counter()
        ids = await generate(database, members, weeks)
        figures: dict[str, Any] = {"generate_s": round(time.perf_counter() - began, 1),
                                   "presence_rows": ids["presence_rows"], "record_rows": ids["record_rows"]}
        vi = Catalogues().translator("vi")
        year = (dt.date(2025, 12, 1), dt.date(2026, 11, 30))  # the 52 weekly sessions

        async def report() -> Any:
            async with database.session() as db:
                return await session_report(db, ids["session"], RULE)

        figures["session_report_s"], rep = await timed(report, runs)
        figures["members"] = len(rep.members)
        figures["statuses"] = {s: sum(1 for m in rep.members if m.status == s) for s in ("attended", "partial", "absent")}

        async def as_json() -> str:
            return json.dumps((await report()).api())

        figures["session_json_s"], _ = await timed(as_json, runs)
        figures["csv_s"], _ = await timed(lambda: asyncio.to_thread(
            export.csv_bytes, [m.api() for m in rep.members], vi, rule=RULE), runs)
        figures["xlsx_s"], body = await timed(lambda: asyncio.to_thread(
            export.xlsx_bytes, [m.api() for m in rep.members], vi, title="Điểm danh", rule=RULE), runs)
        figures["xlsx_kib"] = len(body) // 1024
        # The first unit report finds the big session without records and writes them.
        began = time.perf_counter()
        await unit_report(database, ids["central"], *year, ZONE, RULE)
        figures["unit_first_s"] = time.perf_counter() - began
        figures["unit_central_s"], central = await timed(
            lambda: unit_report(database, ids["central"], *year, ZONE, RULE), runs)
        figures["unit_sessions"] = central.unit.sessions
        figures["unit_member_sessions"] = central.unit.member_sessions
        figures["unit_province_s"], _ = await timed(
            lambda: unit_report(database, ids["province"], *year, ZONE, RULE), runs)
        figures["write_records_s"], _ = await timed(lambda: refresh_records(database, ids["session"], RULE), runs)
        figures["member_history_s"], history = await timed(lambda: member_history(database, ids["member"], RULE), runs)
        figures["history_rows"] = len(history.rows)
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
    finally:
        await database.close()


def _pg(name: str, sql: str) -> None:
    import asyncpg

    async def go() -> None:
        connection = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(go())


def run(members: int, weeks: int, runs: int, with_pg: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bc-attendance-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        results["sqlite"] = asyncio.run(measure(url, members, weeks, runs))
        print("sqlite", json.dumps(results["sqlite"]), flush=True)
    if with_pg:
        name = f"bc_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        _pg(name, f'CREATE DATABASE "{name}"')
        try:
            url = re.sub(r"/[^/]*$", f"/{name}", PG_URL)
            upgrade(url)
            results["postgresql"] = asyncio.run(measure(url, members, weeks, runs))
            print("postgresql", json.dumps(results["postgresql"]), flush=True)
        finally:
            _pg(name, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


ROWS = [
    ("session_report_s", "Session report: {members} members, {presence_rows} presence rows"),
    ("session_json_s", "… and its JSON (the API answer)"),
    ("csv_s", "… as CSV"),
    ("xlsx_s", "… as XLSX ({xlsx_kib} KiB, write-only)"),
    ("write_records_s", "Writing the session's records (at its end, after a correction)"),
    ("unit_first_s", "Unit report, first open (writes the missing records first)"),
    ("unit_central_s", "Unit report, the centre over the year: {unit_sessions} sessions, {unit_member_sessions} member-sessions"),
    ("unit_province_s", "Unit report, one province over the year"),
    ("member_history_s", "A member's history ({history_rows} sessions)"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    results = run(args.members, args.weeks, args.runs, not args.no_pg)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"attendance-{stamp}.json").write_text(json.dumps(results, indent=2))
    if args.no_doc:
        return
    backends = list(results)
    first = results[backends[0]]
    lines = [
        f"`python -m bench.attendance --members {args.members} --weeks {args.weeks}` on {dt.date.today().isoformat()}, "
        f"{machine()}. Median of {args.runs} runs; the database is generated directly (9 provinces × 10 communes, "
        "one hall per province; 60 % of the members online — some with two tabs or a reconnect — 25 % checked in "
        "at their hall, 15 % away), the earlier weekly sessions with their records kept. "
        "Times are the storage call (what a page or the API waits for) without HTTP.",
        "",
        "| what | " + " | ".join(backends) + " |",
        "|---|" + "---:|" * len(backends),
    ]
    for key, label in ROWS:
        lines.append(f"| {label.format(**first)} | " + " | ".join(f"{results[b][key]:.3f} s" for b in backends) + " |")
    write_section("attendance", "Attendance reports at scale", "\n".join(lines))


if __name__ == "__main__":
    main()
