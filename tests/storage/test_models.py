"""Models and queries on both backends: SQLite and the machine's PostgreSQL."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from server.auth.principal import Principal
from server.errors import Conflict, Forbidden, NotFound, ValidationFailed
from server.live.lifecycle import SessionAction, SessionStatus
from server.storage import sessions as session_store
from server.storage import units as unit_store
from server.storage import users as user_store
from server.storage.db import Database
from server.auth.roles import Role
from server.storage.models import BridgePoint, Session, Unit, UnitLevel, User
from tests.conftest import Seed, seed_database
from server.views.auth import principal_of

ICT = timezone(timedelta(hours=7))


@pytest.fixture
async def seeded(database: Database, password_hash: str) -> Seed:
    return await seed_database(database, password_hash)


async def test_timestamps_come_back_aware_and_in_utc(database: Database, seeded: Seed) -> None:
    start = datetime(2026, 12, 1, 8, 0, tzinfo=ICT)
    async with database.session() as db:
        created = await session_store.create_session(db, {
            "title": "Nghị quyết", "description": "", "speaker_id": seeded.speaker.id,
            "scheduled_start": start, "scheduled_end": start + timedelta(hours=2),
            "invited_point_ids": [seeded.point_a.id, seeded.point_b.id],
        }, seeded.admin.id)
    async with database.session() as db:
        loaded = await db.get(Session, created.id)
        assert loaded is not None
        assert loaded.scheduled_start == start
        assert loaded.scheduled_start.tzinfo is not None
        assert loaded.scheduled_start.utcoffset() == timedelta(0)
        assert loaded.scheduled_start.hour == 1  # 08:00 in Vietnam is 01:00 UTC
        assert loaded.invited_point_ids == sorted([seeded.point_a.id, seeded.point_b.id])
        assert loaded.status is SessionStatus.SCHEDULED


async def test_naive_datetimes_are_refused(database: Database, seeded: Seed) -> None:
    with pytest.raises(Exception, match="naive"):
        async with database.session() as db:
            db.add(Session(title="x", scheduled_start=datetime(2026, 1, 1, 8), scheduled_end=datetime(2026, 1, 1, 9),
                           status=SessionStatus.SCHEDULED))
            await db.flush()


async def test_database_constraints_hold(database: Database, seeded: Seed) -> None:
    # Only one hub bridge point.
    with pytest.raises(IntegrityError):
        async with database.session() as db:
            db.add(BridgePoint(name="Hub 2", slug="hub-2", unit_id=seeded.central.id, is_hub=True))
            await db.flush()
    # An operator always has a bridge point.
    with pytest.raises(IntegrityError):
        async with database.session() as db:
            db.add(User(username="op-x", full_name="X", role=Role.OPERATOR, password_hash="h"))
            await db.flush()
    # A session ends after it starts.
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    with pytest.raises(IntegrityError):
        async with database.session() as db:
            db.add(Session(title="x", scheduled_start=start, scheduled_end=start, status=SessionStatus.SCHEDULED))
            await db.flush()
    # Foreign keys are enforced (SQLite needs the pragma).
    with pytest.raises(IntegrityError):
        async with database.session() as db:
            db.add(BridgePoint(name="Orphan", slug="orphan", unit_id=9999))
            await db.flush()


async def test_unit_hierarchy_rules(database: Database, seeded: Seed) -> None:
    async with database.session() as db:
        commune = await unit_store.create_unit(db, {"name": "Xã A1", "slug": "xa-a1", "level": "commune",
                                                    "parent_id": seeded.province_a.id})
        assert await unit_store.ancestor_ids(db, commune.id) == [commune.id, seeded.province_a.id, seeded.central.id]
    cases = [
        ({"name": "P", "slug": "p", "level": "province"}, "parent_id", "required"),
        ({"name": "P", "slug": "p", "level": "province", "parent_id": seeded.province_b.id}, "parent_id",
         "invalid_parent"),
        ({"name": "C", "slug": "c", "level": "central", "parent_id": seeded.central.id}, "parent_id",
         "no_parent_allowed"),
    ]
    for data, field, code in cases:
        with pytest.raises(ValidationFailed) as caught:
            async with database.session() as db:
                await unit_store.create_unit(db, data)
        assert caught.value.by_field() == {field: code}
    with pytest.raises(Conflict):
        async with database.session() as db:
            await unit_store.create_unit(db, {"name": "Dup", "slug": "tinh-a", "level": "province",
                                              "parent_id": seeded.central.id})
    with pytest.raises(Conflict) as in_use:
        async with database.session() as db:
            await unit_store.delete_unit(db, seeded.province_a.id)
    assert in_use.value.code == "unit_in_use"


async def test_password_change_and_deactivation_bump_the_token_version(database: Database, seeded: Seed) -> None:
    async with database.session() as db:
        user = await user_store.update_user(db, seeded.member.id, {"full_name": "Renamed"})
        assert user.token_version == 1
        user = await user_store.update_user(db, seeded.member.id, {"password": "a new password"})
        assert user.token_version == 2
        user = await user_store.update_user(db, seeded.member.id, {"active": False})
        assert user.token_version == 3
        assert user.active is False


async def test_session_visibility_follows_roles(database: Database, seeded: Seed) -> None:
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    async with database.session() as db:
        only_a = await session_store.create_session(db, {
            "title": "A only", "speaker_id": seeded.speaker.id, "scheduled_start": start,
            "scheduled_end": start + timedelta(hours=1), "invited_point_ids": [seeded.point_a.id]}, None)
        only_b = await session_store.create_session(db, {
            "title": "B only", "speaker_id": None, "scheduled_start": start,
            "scheduled_end": start + timedelta(hours=1), "invited_point_ids": [seeded.point_b.id]}, None)
    visible = {}
    async with database.session() as db:
        for name in ("admin", "speaker", "operator", "member", "member_b"):
            principal = principal_of(getattr(seeded, name))
            visible[name] = {s.title for s in await session_store.list_sessions(db, principal)}
        assert visible == {
            "admin": {"A only", "B only"},
            "speaker": {"A only"},
            "operator": {"A only"},
            "member": {"A only"},
            "member_b": {"B only"},
        }
        with pytest.raises(NotFound):
            await session_store.visible_session(db, principal_of(seeded.member), only_b.id)
        assert (await session_store.visible_session(db, principal_of(seeded.member_b), only_b.id)).id == only_b.id


async def test_member_of_a_commune_sees_its_province_hall(database: Database, seeded: Seed) -> None:
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    async with database.session() as db:
        commune = await unit_store.create_unit(db, {"name": "Xã", "slug": "xa", "level": "commune",
                                                    "parent_id": seeded.province_a.id})
        villager = User(username="xa-01", full_name="Xa", role=Role.MEMBER, unit_id=commune.id, password_hash="h")
        db.add(villager)
        await session_store.create_session(db, {
            "title": "A", "scheduled_start": start, "scheduled_end": start + timedelta(hours=1),
            "invited_point_ids": [seeded.point_a.id]}, None)
        await db.flush()
        titles = [s.title for s in await session_store.list_sessions(db, principal_of(villager))]
    assert titles == ["A"]


async def test_lifecycle_through_storage(database: Database, seeded: Seed) -> None:
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    async with database.session() as db:
        session = await session_store.create_session(db, {
            "title": "L", "scheduled_start": start, "scheduled_end": start + timedelta(hours=1),
            "invited_point_ids": [seeded.point_a.id]}, None)
    async with database.session() as db:
        started = await session_store.apply_action(db, session.id, SessionAction.START)
        assert started.status is SessionStatus.LIVE and started.actual_start is not None
        with pytest.raises(Conflict):
            await session_store.apply_action(db, session.id, SessionAction.CANCEL)
        with pytest.raises(Conflict) as live_edit:
            await session_store.update_session(db, session.id, {"scheduled_start": start + timedelta(days=1)})
        assert live_edit.value.code == "session_live"
        await session_store.update_session(db, session.id, {"title": "L (corrected)"})
        ended = await session_store.apply_action(db, session.id, SessionAction.END)
        assert ended.status is SessionStatus.ENDED and ended.actual_end is not None
    async with database.session() as db:
        with pytest.raises(Conflict):
            await session_store.update_session(db, session.id, {"title": "too late"})


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"invited_point_ids": [9999]}, "invited_point_ids", "unknown_point"),
        ({"invited_point_ids": "hub"}, "invited_point_ids", "hub_invited"),
        ({"speaker_id": "member"}, "speaker_id", "not_a_speaker"),
        ({"scheduled_end": datetime(2026, 12, 1, 7, tzinfo=UTC)}, "scheduled_end", "end_before_start"),
    ],
)
async def test_session_references_are_checked(database: Database, seeded: Seed, change: dict, field: str,
                                              code: str) -> None:
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    data = {"title": "x", "scheduled_start": start, "scheduled_end": start + timedelta(hours=1),
            "invited_point_ids": [seeded.point_a.id], **change}
    if data["invited_point_ids"] == "hub":
        data["invited_point_ids"] = [seeded.hub.id]
    if data.get("speaker_id") == "member":
        data["speaker_id"] = seeded.member.id
    with pytest.raises(ValidationFailed) as caught:
        async with database.session() as db:
            await session_store.create_session(db, data, None)
    assert caught.value.by_field() == {field: code}
    async with database.session() as db:
        assert list(await db.scalars(select(Session))) == []


async def test_units_points_and_invitations_come_in_vietnamese_order(database: Database, seeded: Seed) -> None:
    # Byte order (SQLite's ORDER BY) would put every "Đ" after "G": U+0110 > "G".
    from server.storage.live import load_info

    async with database.session() as db:
        for name, slug in (("Tỉnh Gia Lai", "gia-lai"), ("Tỉnh Đắk Lắk", "dak-lak"), ("Tỉnh Bình Định", "binh-dinh"),
                           ("Tỉnh Bình Dương", "binh-duong")):
            unit = await unit_store.create_unit(db, {"name": name, "slug": slug, "level": "province",
                                                     "parent_id": seeded.central.id})
            await unit_store.create_point(db, {"name": name.replace("Tỉnh", "Điểm cầu"), "slug": slug,
                                               "unit_id": unit.id})
        units = [unit.name for unit in await unit_store.list_units(db)]
        points = await unit_store.list_points(db)
        session = await session_store.create_session(db, {
            "title": "Thứ tự", "scheduled_start": datetime(2026, 12, 1, 8, tzinfo=UTC),
            "scheduled_end": datetime(2026, 12, 1, 9, tzinfo=UTC),
            "invited_point_ids": [point.id for point in points if not point.is_hub]}, None)
    assert units == ["Trung ương", "Tỉnh A", "Tỉnh B", "Tỉnh Bình Dương", "Tỉnh Bình Định", "Tỉnh Đắk Lắk",
                     "Tỉnh Gia Lai"]
    halls = ["Điểm cầu A", "Điểm cầu B", "Điểm cầu Bình Dương", "Điểm cầu Bình Định", "Điểm cầu Đắk Lắk",
             "Điểm cầu Gia Lai"]
    assert [point.name for point in points] == ["Điểm cầu Trung ương", *halls]  # the hub first
    info = await load_info(database, session.id)
    assert list(info.invited.values()) == halls  # the roll call's order
