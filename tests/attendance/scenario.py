"""A hand-computed attendance scenario: one session live for exactly 60 minutes, rows written directly.

Times are seconds from the live start T0. Every figure the tests assert is
worked out here, next to the rows that produce it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from server.auth.roles import Role
from server.live.lifecycle import SessionStatus
from server.storage.db import Database
from server.storage.models import (
    Checkin,
    CheckinSource,
    FloorGrant,
    PresenceEvent,
    Session,
    SessionInvite,
    User,
)
from tests.conftest import Seed

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 08:00 in Hà Nội
LIVE = 3600

_ids = itertools.count(1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class Scenario:
    session_id: int
    users: dict[str, User] = field(default_factory=dict)


def _presence(session_id: int, key: str, endpoint: str, kind: str, seconds: float, *, user_id: int | None = None,
              point_id: int | None = None, node: str = "hub") -> PresenceEvent:
    return PresenceEvent(event_id=f"ev-{next(_ids)}-{endpoint}-{kind}", session_id=session_id, at=at(seconds),
                         kind=kind, endpoint_id=endpoint, endpoint_kind="socket", participant_key=key,
                         role="hall" if point_id else "member", user_id=user_id, bridge_point_id=point_id,
                         node=node)


def online(session_id: int, user: User, endpoint: str, start: float, end: float | None,
           end_kind: str = "leave", node: str = "hub") -> list[PresenceEvent]:
    rows = [_presence(session_id, f"user:{user.id}", endpoint, "join", start, user_id=user.id, node=node)]
    if end is not None:
        rows.append(_presence(session_id, f"user:{user.id}", endpoint, end_kind, end, user_id=user.id))
    return rows


async def build(database: Database, seed: Seed, password_hash: str) -> Scenario:
    """The session, its members and what they did.

    Point A (Tỉnh A) expects 5 members, point B (Tỉnh B) 5:

    ====== ===== ============================================== ========= ====== =====
    member point  presence                                       credited  status late/early
    ====== ===== ============================================== ========= ====== =====
    tabs   A     tab 1 0-1800, tab 2 600-2400, rejoin 3000-3600 3000      att.   0/0
    hall   A     checked in at A from -600; A connected -1800..  3000      att.   0/0
                 1500, dropped 10 min, back 2100-3600
    both   A     checked in at A from 0 and online 1200-2400     3600      att.   0/0
    absent A     nothing                                         0         abs.   0/0
    member-a A   nothing (the seed's member)                    0         abs.   0/0
    late   B     online 900-3600                                 2700      part.  15/0
    early  B     online -300-2400                                2400      part.  0/20
    open   B     online from 1800, never closed (ended session)  1800      part.  30/0
    fixed  B     nothing; corrected afterwards to attended 3600  0 -> 3600 abs.->att.
    member-b B   nothing                                         0         abs.   0/0
    ====== ===== ============================================== ========= ====== =====

    Hall A: connected 3000 s of the live hour, talk 300 s (600-900) plus an
    open grant from 3500 (100 s to the end) = 400 s; checked in 2.
    """
    async with database.session() as db:
        session = Session(title="Nghị quyết Trung ương: =chuyên đề 1", description="",
                          speaker_id=seed.speaker.id, scheduled_start=at(0), scheduled_end=at(LIVE + 600),
                          actual_start=at(0), actual_end=at(LIVE), status=SessionStatus.ENDED)
        session.invites = [SessionInvite(bridge_point_id=seed.point_a.id),
                           SessionInvite(bridge_point_id=seed.point_b.id)]
        db.add(session)
        names = {"tabs": ("Nguyễn Văn Tab", seed.province_a), "hall": ("Trần Thị Hội", seed.province_a),
                 "both": ("Lê Văn Cả", seed.province_a), "absent": ("Phạm Thị Vắng", seed.province_a),
                 "late": ("Hoàng Văn Muộn", seed.province_b), "early": ("Đặng Thị Sớm", seed.province_b),
                 "open": ("Vũ Văn Mở", seed.province_b), "fixed": ("=Bùi Thị Sửa", seed.province_b)}
        users = {key: User(username=f"sv-{key}", full_name=name, role=Role.MEMBER, unit_id=unit.id,
                           password_hash=password_hash) for key, (name, unit) in names.items()}
        db.add_all(users.values())
        await db.flush()
        sid = session.id
        u = users
        point_a = seed.point_a.id
        hall = f"point:{point_a}"
        rows = [
            *online(sid, u["tabs"], "tab1", 0, 1800),
            *online(sid, u["tabs"], "tab2", 600, 2400),
            *online(sid, u["tabs"], "tab3", 3000, LIVE),
            _presence(sid, hall, "hall-1", "join", -1800, point_id=point_a),
            _presence(sid, hall, "hall-1", "drop", 1500, point_id=point_a),
            _presence(sid, hall, "hall-2", "join", 2100, point_id=point_a),
            _presence(sid, hall, "hall-2", "leave", LIVE, point_id=point_a),
            *online(sid, u["both"], "both-1", 1200, 2400),
            *online(sid, u["late"], "late-1", 900, LIVE),
            *online(sid, u["early"], "early-1", -300, 2400, end_kind="drop"),
            # Seen by a relay whose leave never reached the hub (the hub's crash recovery leaves it open).
            *online(sid, u["open"], "open-1", 1800, None, node="relay-1"),
        ]
        db.add_all(rows)
        db.add_all([
            Checkin(session_id=sid, user_id=u["hall"].id, bridge_point_id=point_a, checked_in_at=at(-600),
                    source=CheckinSource.QR),
            Checkin(session_id=sid, user_id=u["both"].id, bridge_point_id=point_a, checked_in_at=at(0),
                    source=CheckinSource.MANUAL, recorded_by_id=seed.operator.id),
            FloorGrant(session_id=sid, bridge_point_id=point_a, started_at=at(600), ended_at=at(900),
                       end_reason="revoked"),
            FloorGrant(session_id=sid, bridge_point_id=point_a, started_at=at(3500), ended_at=None),
        ])
    return Scenario(sid, {**users, "member-a": seed.member, "member-b": seed.member_b})


# What the report must say, member by member: live, credited, status, late, early, online, hall, checked in.
EXPECTED = {
    "sv-tabs": (3000, 3000, "attended", 0, 0, 3000, 0, False),
    "sv-hall": (3000, 3000, "attended", 0, 0, 0, 3000, True),
    "sv-both": (3600, 3600, "attended", 0, 0, 1200, 3000, True),
    "sv-absent": (0, 0, "absent", 0, 0, 0, 0, False),
    "member-a": (0, 0, "absent", 0, 0, 0, 0, False),
    "sv-late": (2700, 2700, "partial", 15, 0, 2700, 0, False),
    "sv-early": (2400, 2400, "partial", 0, 20, 2400, 0, False),
    "sv-open": (1800, 1800, "partial", 30, 0, 1800, 0, False),
    "sv-fixed": (0, 0, "absent", 0, 0, 0, 0, False),
    "member-b": (0, 0, "absent", 0, 0, 0, 0, False),
}
