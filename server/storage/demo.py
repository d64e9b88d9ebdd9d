"""The demo data set: the central hub and the 9 pilot provinces (the README).

Loading is idempotent: what exists is kept, what is missing is added.  There
are no built-in passwords: the first load generates one per role group and
keeps them in ``<data_dir>/demo-logins.json`` (mode 0600) so later loads can
print them again.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.passwords import hash_password_async
from server.live.lifecycle import SessionStatus
from server.auth.roles import Role
from server.storage.models import BridgePoint, Session, SessionInvite, Unit, UnitLevel, User, utcnow

# (unit name, bridge point name, slug): the pilot launch's nine provinces.
PROVINCES = [
    ("Thành ủy Hải Phòng", "Điểm cầu Hải Phòng", "hai-phong"),
    ("Tỉnh ủy Thái Nguyên", "Điểm cầu Thái Nguyên", "thai-nguyen"),
    ("Tỉnh ủy Tuyên Quang", "Điểm cầu Tuyên Quang", "tuyen-quang"),
    ("Tỉnh ủy Sơn La", "Điểm cầu Sơn La", "son-la"),
    ("Tỉnh ủy Hà Tĩnh", "Điểm cầu Hà Tĩnh", "ha-tinh"),
    ("Tỉnh ủy Đắk Lắk", "Điểm cầu Đắk Lắk", "dak-lak"),
    ("Tỉnh ủy Bình Định", "Điểm cầu Bình Định", "binh-dinh"),
    ("Thành ủy Cần Thơ", "Điểm cầu Cần Thơ", "can-tho"),
    ("Tỉnh ủy Bình Dương", "Điểm cầu Bình Dương", "binh-duong"),
]
CENTRAL = ("Ban Chấp hành Trung ương", "Điểm cầu Trung ương", "trung-uong")
MEMBERS_PER_PROVINCE = 20
SESSION_TITLE = "Hội nghị học tập, quán triệt Nghị quyết Trung ương (thí điểm)"
LOGINS_FILE = "demo-logins.json"

_FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ"]
_MIDDLE = ["Văn", "Thị", "Minh", "Thu", "Quốc", "Thanh", "Hữu", "Ngọc"]
_GIVEN = ["An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hùng", "Lan", "Long", "Mai", "Nam", "Phương", "Quân", "Sơn",
          "Tâm", "Thảo", "Trung", "Tuấn", "Việt", "Yến"]


@dataclass
class DemoResult:
    logins: dict[str, str] = field(default_factory=dict)
    session_id: int = 0
    created_users: int = 0


def _member_name(index: int) -> str:
    return f"{_FAMILY[index % 10]} {_MIDDLE[(index // 10) % 8]} {_GIVEN[(index * 7) % 20]}"


def _passwords(data_dir: Path) -> dict[str, str]:
    path = data_dir / LOGINS_FILE
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    data_dir.mkdir(parents=True, exist_ok=True)
    passwords = {group: secrets.token_urlsafe(9) for group in ("admin", "speaker", "operators", "members")}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(passwords, handle, indent=2)
    return passwords


async def _unit(db: AsyncSession, name: str, slug: str, level: UnitLevel, parent: Unit | None) -> Unit:
    unit = await db.scalar(select(Unit).where(Unit.slug == slug))
    if unit is None:
        unit = Unit(name=name, slug=slug, level=level, parent_id=parent.id if parent else None)
        db.add(unit)
        await db.flush()
    return unit


async def _point(db: AsyncSession, name: str, slug: str, unit: Unit, is_hub: bool) -> BridgePoint:
    point = await db.scalar(select(BridgePoint).where(BridgePoint.slug == slug))
    if point is None:
        point = BridgePoint(name=name, slug=slug, unit_id=unit.id, is_hub=is_hub, location=unit.name)
        db.add(point)
        await db.flush()
    return point


async def load_demo(db: AsyncSession, data_dir: Path, zone: ZoneInfo, now: datetime | None = None) -> DemoResult:
    """Create whatever part of the demo set is missing; return the logins and the session id."""
    passwords = _passwords(data_dir)
    # One hash per role group: the demo's 189 accounts load in a second, not in 20.
    hashes = {group: await hash_password_async(password) for group, password in passwords.items()}
    result = DemoResult()
    existing = set(await db.scalars(select(User.username)))

    def add_user(username: str, full_name: str, role: Role, group: str, unit: Unit, point: BridgePoint | None = None) -> None:
        if username not in existing:
            db.add(User(username=username, full_name=full_name, role=role, unit_id=unit.id,
                        bridge_point_id=point.id if point else None, password_hash=hashes[group]))
            result.created_users += 1

    central = await _unit(db, CENTRAL[0], CENTRAL[2], UnitLevel.CENTRAL, None)
    await _point(db, CENTRAL[1], CENTRAL[2], central, is_hub=True)
    add_user("admin", "Quản trị hệ thống", Role.ADMIN, "admin", central)
    add_user("speaker", "Báo cáo viên Trung ương", Role.SPEAKER, "speaker", central)
    points: list[BridgePoint] = []
    for number, (unit_name, point_name, slug) in enumerate(PROVINCES):
        unit = await _unit(db, unit_name, slug, UnitLevel.PROVINCE, central)
        point = await _point(db, point_name, slug, unit, is_hub=False)
        points.append(point)
        add_user(f"op-{slug}", f"Kỹ thuật viên {point_name.removeprefix('Điểm cầu ')}", Role.OPERATOR, "operators",
                 unit, point)
        for index in range(1, MEMBERS_PER_PROVINCE + 1):
            add_user(f"{slug}-{index:02d}", _member_name(number * MEMBERS_PER_PROVINCE + index), Role.MEMBER,
                     "members", unit)
    await db.flush()

    session = await db.scalar(
        select(Session).where(Session.title == SESSION_TITLE, Session.status.in_([SessionStatus.SCHEDULED,
                                                                                    SessionStatus.LIVE]))
    )
    if session is None:
        speaker = await db.scalar(select(User).where(User.username == "speaker"))
        today = (now or utcnow()).astimezone(zone).date()
        start = datetime.combine(today + timedelta(days=1), time(8, 0), tzinfo=zone)
        session = Session(
            title=SESSION_TITLE,
            description="Buổi học thí điểm nối điểm cầu Trung ương với 9 điểm cầu tỉnh, thành phố.",
            speaker_id=speaker.id if speaker else None,
            scheduled_start=start,
            scheduled_end=start + timedelta(hours=3),
            status=SessionStatus.SCHEDULED,
        )
        session.invites = [SessionInvite(bridge_point_id=point.id) for point in points]
        db.add(session)
        await db.flush()
    result.session_id = session.id
    result.logins = {
        "admin": passwords["admin"],
        "speaker": passwords["speaker"],
        "op-<province>": passwords["operators"],
        "<province>-01 … -20": passwords["members"],
    }
    return result
