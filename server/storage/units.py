"""Units (central -> province -> commune) and bridge points."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.collation import vietnamese_key
from server.errors import Conflict, NotFound, ValidationFailed
from server.storage.models import PARENT_LEVEL, BridgePoint, SessionInvite, Unit, UnitLevel, User


async def list_units(db: AsyncSession) -> list[Unit]:
    """Central first, then provinces, then communes; by name within a level (server/collation.py)."""
    rank = {level: index for index, level in enumerate(UnitLevel)}
    units = await db.scalars(select(Unit))
    return sorted(units, key=lambda unit: (rank[unit.level], vietnamese_key(unit.name)))


async def get_unit(db: AsyncSession, unit_id: int) -> Unit:
    unit = await db.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"unit {unit_id} not found")
    return unit


async def unit_by_slug(db: AsyncSession, slug: str) -> Unit | None:
    return await db.scalar(select(Unit).where(Unit.slug == slug))


def _ancestors_template() -> Select[tuple[int]]:
    chain = select(Unit.id, Unit.parent_id).where(Unit.id == bindparam("chain_unit_id")).cte(
        "unit_chain", recursive=True)
    above = aliased(Unit)
    chain = chain.union(select(above.id, above.parent_id).join(chain, above.id == chain.c.parent_id))
    return select(chain.c.id)


# Built once: constructing the recursive CTE costs more than running it (it was 11 % of a join storm).
_ANCESTORS = _ancestors_template()


def ancestors_query(unit_id: int) -> Select[tuple[int]]:
    """The ids of the unit and of the units above it, as a subquery (recursive; UNION stops at a cycle)."""
    return _ANCESTORS.params(chain_unit_id=unit_id)


async def ancestor_ids(db: AsyncSession, unit_id: int) -> list[int]:
    """The unit and the units above it, nearest first."""
    chain: list[int] = []
    current: int | None = unit_id
    while current is not None and current not in chain:
        chain.append(current)
        current = await db.scalar(select(Unit.parent_id).where(Unit.id == current))
    return chain


async def unit_tree(db: AsyncSession) -> dict[int | None, list[int]]:
    """parent id -> its child units' ids (None -> the top units): the whole hierarchy in one query."""
    children: dict[int | None, list[int]] = {}
    for unit_id, parent_id in (await db.execute(select(Unit.id, Unit.parent_id))).all():
        children.setdefault(parent_id, []).append(unit_id)
    return children


def subtree(children: dict[int | None, list[int]], unit_id: int) -> list[int]:
    """The unit and every unit below it."""
    found: list[int] = []
    seen: set[int] = set()
    stack = [unit_id]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        found.append(current)
        stack.extend(children.get(current, ()))
    return found


async def descendant_ids(db: AsyncSession, unit_id: int) -> list[int]:
    """The unit and every unit below it (communes of a province, all of a central unit)."""
    return subtree(await unit_tree(db), unit_id)


async def _check_unit(db: AsyncSession, data: dict[str, Any], unit: Unit | None) -> None:
    level = UnitLevel(data.get("level", unit.level if unit else None))
    parent_id = data.get("parent_id", unit.parent_id if unit else None)
    wanted = PARENT_LEVEL[level]
    if wanted is None:
        if parent_id is not None:
            raise ValidationFailed.one("parent_id", "no_parent_allowed", "a central unit has no parent")
        return
    if parent_id is None:
        raise ValidationFailed.one("parent_id", "required", f"a {level.value} unit needs a {wanted.value} parent")
    parent = await db.get(Unit, parent_id)
    if parent is None or parent.level is not wanted:
        raise ValidationFailed.one("parent_id", "invalid_parent", f"the parent must be a {wanted.value} unit")
    if unit is not None and parent.id == unit.id:
        raise ValidationFailed.one("parent_id", "invalid_parent", "a unit cannot be its own parent")


async def _check_slug(db: AsyncSession, model: type[Unit] | type[BridgePoint], slug: str | None, own_id: int | None) -> None:
    if slug is None:
        return
    existing = await db.scalar(select(model.id).where(model.slug == slug))
    if existing is not None and existing != own_id:
        raise Conflict(f"slug {slug!r} is taken", code="slug_taken", details=[{"field": "slug", "code": "taken"}])


async def create_unit(db: AsyncSession, data: dict[str, Any]) -> Unit:
    await _check_unit(db, data, None)
    await _check_slug(db, Unit, data["slug"], None)
    unit = Unit(**{**data, "level": UnitLevel(data["level"])})
    db.add(unit)
    await db.flush()
    return unit


async def update_unit(db: AsyncSession, unit_id: int, data: dict[str, Any]) -> Unit:
    unit = await get_unit(db, unit_id)
    await _check_unit(db, data, unit)
    await _check_slug(db, Unit, data.get("slug"), unit.id)
    if "level" in data and data["level"] != unit.level:
        children = await db.scalar(select(func.count()).select_from(Unit).where(Unit.parent_id == unit.id))
        if children:
            raise Conflict("a unit with child units cannot change level", code="unit_has_children")
    for key, value in data.items():
        setattr(unit, key, UnitLevel(value) if key == "level" else value)
    await db.flush()
    return unit


async def delete_unit(db: AsyncSession, unit_id: int) -> None:
    unit = await get_unit(db, unit_id)
    for model, column, what in (
        (Unit, Unit.parent_id, "child units"),
        (BridgePoint, BridgePoint.unit_id, "bridge points"),
        (User, User.unit_id, "users"),
    ):
        if await db.scalar(select(func.count()).select_from(model).where(column == unit.id)):
            raise Conflict(f"the unit still has {what}", code="unit_in_use")
    await db.delete(unit)
    await db.flush()


async def list_points(db: AsyncSession, *, active_only: bool = False) -> list[BridgePoint]:
    """The hub first, then the halls by name (server/collation.py)."""
    query = select(BridgePoint)
    if active_only:
        query = query.where(BridgePoint.active.is_(True))
    points = await db.scalars(query)
    return sorted(points, key=lambda point: (not point.is_hub, vietnamese_key(point.name)))


async def get_point(db: AsyncSession, point_id: int) -> BridgePoint:
    point = await db.get(BridgePoint, point_id)
    if point is None:
        raise NotFound(f"bridge point {point_id} not found")
    return point


async def point_by_slug(db: AsyncSession, slug: str) -> BridgePoint | None:
    return await db.scalar(select(BridgePoint).where(BridgePoint.slug == slug))


async def _check_point(db: AsyncSession, data: dict[str, Any], point: BridgePoint | None) -> None:
    if "unit_id" in data and await db.get(Unit, data["unit_id"]) is None:
        raise ValidationFailed.one("unit_id", "unknown_unit", "no such unit")
    if data.get("is_hub"):
        hub = await db.scalar(select(BridgePoint.id).where(BridgePoint.is_hub.is_(True)))
        if hub is not None and (point is None or hub != point.id):
            raise Conflict("there is already a hub bridge point", code="hub_exists")


async def create_point(db: AsyncSession, data: dict[str, Any]) -> BridgePoint:
    await _check_point(db, data, None)
    await _check_slug(db, BridgePoint, data["slug"], None)
    point = BridgePoint(**data)
    db.add(point)
    await db.flush()
    return point


async def update_point(db: AsyncSession, point_id: int, data: dict[str, Any]) -> BridgePoint:
    point = await get_point(db, point_id)
    await _check_point(db, data, point)
    await _check_slug(db, BridgePoint, data.get("slug"), point.id)
    for key, value in data.items():
        setattr(point, key, value)
    await db.flush()
    return point


async def delete_point(db: AsyncSession, point_id: int) -> None:
    point = await get_point(db, point_id)
    invited = await db.scalar(
        select(func.count()).select_from(SessionInvite).where(SessionInvite.bridge_point_id == point.id)
    )
    if invited:
        raise Conflict("the bridge point is invited to sessions: deactivate it instead", code="point_in_use")
    operators = await db.scalar(select(func.count()).select_from(User).where(User.bridge_point_id == point.id))
    if operators:
        raise Conflict("operators run this bridge point: reassign them first", code="point_in_use")
    await db.delete(point)
    await db.flush()
