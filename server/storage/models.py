"""SQLAlchemy 2 models: units, bridge points, users, sessions.

Every timestamp is stored in UTC and comes back timezone-aware, on SQLite
(which keeps no zone) and PostgreSQL alike.  Later capabilities add their own
tables in their own migrations.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from server.auth.roles import Role
from server.live.lifecycle import SessionStatus

# Stable constraint names so that migrations are reproducible on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: give a timezone")
        value = value.astimezone(UTC)
        # SQLite keeps no zone: store naive UTC there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UnitLevel(enum.StrEnum):
    CENTRAL = "central"
    PROVINCE = "province"
    COMMUNE = "commune"


# Which level a unit's parent must have.
PARENT_LEVEL = {
    UnitLevel.CENTRAL: None,
    UnitLevel.PROVINCE: UnitLevel.CENTRAL,
    UnitLevel.COMMUNE: UnitLevel.PROVINCE,
}


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings with a CHECK, portable between SQLite and PostgreSQL.
    return Enum(cls, name=name, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


class Unit(Base):
    __tablename__ = "units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    level: Mapped[UnitLevel] = mapped_column(_enum(UnitLevel, "unit_level"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    parent: Mapped[Unit | None] = relationship(remote_side=[id], lazy="raise")


class BridgePoint(Base):
    __tablename__ = "bridge_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    is_hub: Mapped[bool] = mapped_column(Boolean, default=False)
    location: Mapped[str] = mapped_column(String(300), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    unit: Mapped[Unit] = relationship(lazy="raise")

    __table_args__ = (
        # At most one hub: a partial unique index on both backends.
        Index(
            "uq_bridge_points_single_hub",
            "is_hub",
            unique=True,
            sqlite_where=text("is_hub"),
            postgresql_where=text("is_hub"),
        ),
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), default="")
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    bridge_point_id: Mapped[int | None] = mapped_column(
        ForeignKey("bridge_points.id", ondelete="SET NULL"), index=True
    )
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped on password change or deactivation: tokens carrying an older
    # version are refused, which revokes every session of that user at once.
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    locale: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    unit: Mapped[Unit | None] = relationship(lazy="raise")
    bridge_point: Mapped[BridgePoint | None] = relationship(lazy="raise")

    __table_args__ = (
        CheckConstraint("role <> 'operator' OR bridge_point_id IS NOT NULL", name="operator_has_point"),
    )


class SessionInvite(Base):
    __tablename__ = "session_invites"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    bridge_point_id: Mapped[int] = mapped_column(
        ForeignKey("bridge_points.id", ondelete="RESTRICT"), primary_key=True, index=True
    )


class Session(Base):
    """One scheduled live lecture."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    speaker_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    scheduled_start: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    scheduled_end: Mapped[datetime] = mapped_column(UTCDateTime())
    actual_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    actual_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[SessionStatus] = mapped_column(_enum(SessionStatus, "session_status"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    speaker: Mapped[User | None] = relationship(foreign_keys=[speaker_id], lazy="raise")
    invites: Mapped[list[SessionInvite]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by=SessionInvite.bridge_point_id
    )

    __table_args__ = (
        CheckConstraint("scheduled_end > scheduled_start", name="ends_after_start"),
    )

    @property
    def invited_point_ids(self) -> list[int]:
        return [invite.bridge_point_id for invite in self.invites]


class FloorGrant(Base):
    """A period during which a bridge point held the floor: talk time per hall, chapters later."""

    __tablename__ = "floor_grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    bridge_point_id: Mapped[int] = mapped_column(ForeignKey("bridge_points.id", ondelete="RESTRICT"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    limit_seconds: Mapped[int | None] = mapped_column(Integer)
    # revoked | expired | left | removed | dropped; empty while the grant is open.
    end_reason: Mapped[str] = mapped_column(String(16), default="")
    # The live domain's id of the grant (FloorGranted.grant_id): events about it
    # are applied once however often they are delivered. Null for older rows.
    grant_key: Mapped[str | None] = mapped_column(String(32), unique=True)
