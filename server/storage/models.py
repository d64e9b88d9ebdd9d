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
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
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


class RevokedToken(Base):
    """A token signed out before its expiry: refused until then, and then forgotten (purged)."""

    __tablename__ = "revoked_tokens"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


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
    # Recorded for the archive when it goes live (the default); off for a rehearsal.
    record: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))

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


# Attendance ---------------------------------------------------------------------------------------
#
# Never deleted: rows refer to sessions, users and points with RESTRICT, and
# nothing in the code removes them (a wrong check-in is marked removed, a
# correction is a new row). See docs/architecture.md, "Attendance".


class PresenceEvent(Base):
    """One endpoint's join, leave or drop, as the live event stream said it: append-only.

    ``event_id`` is the live event's id (unique: the same event delivered twice
    is stored once). ``kind`` is join, leave, drop, or server_stop — an interval
    left open by a server that stopped without closing it, closed at its last
    heartbeat when it starts again.
    """

    __tablename__ = "presence_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="RESTRICT"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(12))
    endpoint_id: Mapped[str] = mapped_column(String(64))
    endpoint_kind: Mapped[str] = mapped_column(String(8))
    participant_key: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(8))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    bridge_point_id: Mapped[int | None] = mapped_column(ForeignKey("bridge_points.id", ondelete="RESTRICT"))
    # The server process that saw it (the hub, later a relay): its heartbeat closes what it left open.
    node: Mapped[str] = mapped_column(String(64), default="hub")

    __table_args__ = (
        Index("ix_presence_events_session_participant", "session_id", "participant_key"),
        Index("ix_presence_events_node_endpoint", "node", "endpoint_id"),
        CheckConstraint("kind IN ('join', 'leave', 'drop', 'server_stop')", name="kind"),
    )


class NodeHeartbeat(Base):
    """The last time a server process was known to run: where it closes intervals after a crash."""

    __tablename__ = "node_heartbeats"

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class CheckinSource(enum.StrEnum):
    QR = "qr"  # the member scanned the hall screen's QR code
    CODE = "code"  # the member typed the hall screen's 6-digit code
    MANUAL = "manual"  # the hall's operator marked the member present


class Checkin(Base):
    """A member present in a hall from ``checked_in_at`` until they check out or in elsewhere.

    At most one open check-in per member and session (a partial unique index):
    checking in again at the same hall is harmless, at another hall closes
    the first. A wrong one is marked removed (audited), never deleted.
    """

    __tablename__ = "checkins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="RESTRICT"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    bridge_point_id: Mapped[int] = mapped_column(ForeignKey("bridge_points.id", ondelete="RESTRICT"))
    checked_in_at: Mapped[datetime] = mapped_column(UTCDateTime())
    checked_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    source: Mapped[CheckinSource] = mapped_column(_enum(CheckinSource, "checkin_source"))
    # Who recorded it: the member themself, or the operator who marked them.
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    removed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))

    __table_args__ = (
        Index(
            "uq_checkins_open",
            "session_id",
            "user_id",
            unique=True,
            sqlite_where=text("checked_out_at IS NULL AND removed_at IS NULL"),
            postgresql_where=text("checked_out_at IS NULL AND removed_at IS NULL"),
        ),
    )


class AttendanceCorrection(Base):
    """An administrator's correction of one member's result in one session: the newest applies."""

    __tablename__ = "attendance_corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="RESTRICT"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    # attended | partial | absent; None keeps the computed status.
    status: Mapped[str | None] = mapped_column(String(16))
    # Replaces the credited seconds; None keeps the computed figure.
    credited_seconds: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    corrected_by_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    corrected_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AttendanceAudit(Base):
    """Every manual change of attendance: who, when, what it was before and after, and why."""

    __tablename__ = "attendance_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="RESTRICT"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    # checkin_removed | marked_present | correction
    action: Mapped[str] = mapped_column(String(24))
    before: Mapped[str] = mapped_column(Text, default="")  # JSON
    after: Mapped[str] = mapped_column(Text, default="")  # JSON
    reason: Mapped[str] = mapped_column(Text, default="")


class AttendanceRecord(Base):
    """One member's result in one session, as the credit rule computed it: one row per person.

    Derived from the presence events, check-ins and corrections (which stay
    the source of truth) and written again whenever one of them changes; the
    unit and bridge point are kept as they were, so a member who moves later
    keeps their history where it happened.
    """

    __tablename__ = "attendance_records"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="RESTRICT"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), primary_key=True, index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    bridge_point_id: Mapped[int | None] = mapped_column(ForeignKey("bridge_points.id", ondelete="RESTRICT"))
    live_seconds: Mapped[int] = mapped_column(Integer)
    replay_seconds: Mapped[int] = mapped_column(Integer, default=0)
    credited_seconds: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    late_minutes: Mapped[int] = mapped_column(Integer, default=0)
    early_minutes: Mapped[int] = mapped_column(Integer, default=0)
    checked_in: Mapped[bool] = mapped_column(Boolean, default=False)
    corrected: Mapped[bool] = mapped_column(Boolean, default=False)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        # The unit reports sum records by session and unit: read from the index alone.
        Index("ix_attendance_records_session_unit", "session_id", "unit_id", "status", "credited_seconds"),
    )


# The archive -----------------------------------------------------------------------------------------
#
# A session has at most one recording, made of parts: a server that restarts
# mid-session continues into a new part. Rows stay when the media files are
# deleted (by an administrator or the retention setting): replay credit and
# attendance refer to them. See docs/architecture.md, "The archive".


class RecordingStatus(enum.StrEnum):
    RECORDING = "recording"  # being written now (or the session is live and will resume)
    READY = "ready"  # finished and playable
    INTERRUPTED = "interrupted"  # playable, but a crash cut a part short: a gap of a few seconds
    FAILED = "failed"  # nothing playable was recorded
    DELETED = "deleted"  # its media files were removed

    @property
    def playable(self) -> bool:
        return self in (RecordingStatus.READY, RecordingStatus.INTERRUPTED)


class JobStatus(enum.StrEnum):
    """The MP4 and poster job of a finished recording."""

    WAITING = "waiting"  # the recording is not finished yet
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # every attempt failed: reported, never silently dropped


class Recording(Base):
    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="RESTRICT"), unique=True)
    status: Mapped[RecordingStatus] = mapped_column(_enum(RecordingStatus, "recording_status"), index=True)
    node: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    # Paths relative to the recordings folder; empty until the file exists.
    file: Mapped[str] = mapped_column(String(300), default="")
    mp4_file: Mapped[str] = mapped_column(String(300), default="")
    poster_file: Mapped[str] = mapped_column(String(300), default="")
    mp4_status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"), default=JobStatus.WAITING)
    mp4_progress: Mapped[float] = mapped_column(Float, default=0.0)
    mp4_attempts: Mapped[int] = mapped_column(Integer, default=0)
    mp4_error: Mapped[str] = mapped_column(Text, default="")
    mp4_not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RecordingPart(Base):
    """One continuous file of a recording: from a start (or a restart) to an end (or a crash)."""

    __tablename__ = "recording_parts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="RESTRICT"))
    number: Mapped[int] = mapped_column(Integer)
    file: Mapped[str] = mapped_column(String(300))
    # Session wall clock at the part's media time 0, and where the part begins in the recording.
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    offset_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # recording | closed | interrupted
    status: Mapped[str] = mapped_column(String(16))
    node: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("uq_recording_parts_number", "recording_id", "number", unique=True),)


class RecordingChapter(Base):
    """The picture on air changed (a floor given or ended): a chapter of the recording."""

    __tablename__ = "recording_chapters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="RESTRICT"), index=True)
    at_seconds: Mapped[float] = mapped_column(Float)
    participant_key: Mapped[str] = mapped_column(String(32))
    # hall | speaker: the title is made in the reader's language from it and the name.
    kind: Mapped[str] = mapped_column(String(12))
    name: Mapped[str] = mapped_column(String(200))
    # The OnAirChanged event's id: a chapter is stored once however often it is delivered.
    event_id: Mapped[str] = mapped_column(String(40), unique=True)


class ReplayProgress(Base):
    """What one member has watched of one recording: the union of media ranges, never a position."""

    __tablename__ = "replay_progress"

    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="RESTRICT"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), primary_key=True, index=True)
    ranges: Mapped[str] = mapped_column(Text, default="[]")  # JSON [[from, to], ...], media seconds
    credited_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    last_report_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Where the member left off (resume), as the player last said.
    position_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RecordingAudit(Base):
    """Who removed a recording's media, when and why (an administrator, or the retention setting)."""

    __tablename__ = "recording_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="RESTRICT"), index=True)
    # None: the retention setting.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")


# Quality ------------------------------------------------------------------------------------------


class QualityEvent(Base):
    """A point's alarm (dropped, red, recovered) or its connection test, as the live stream said it.

    Append-only and keyed by the event's id: delivered twice, kept once.
    """

    __tablename__ = "quality_events"
    __table_args__ = (Index("ix_quality_events_session_point", "session_id", "bridge_point_id", "at"),)

    event_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    bridge_point_id: Mapped[int] = mapped_column(ForeignKey("bridge_points.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    # "alarm" or "precheck"
    kind: Mapped[str] = mapped_column(String(16))
    # alarm: dropped | red | recovered; precheck: ok | failed
    state: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[str] = mapped_column(String(200), default="")
    rtt_ms: Mapped[float | None] = mapped_column(Float)
    loss_pct: Mapped[float | None] = mapped_column(Float)
    jitter_ms: Mapped[float | None] = mapped_column(Float)
    bitrate_kbps: Mapped[float | None] = mapped_column(Float)
    video_frames: Mapped[int | None] = mapped_column(Integer)
    audio: Mapped[bool | None] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(String(200), default="")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


# The cascade --------------------------------------------------------------------------------------


class Relay(Base):
    """A relay node (issue 14): it takes its parent's program once and serves the points of its unit.

    ``parent_id`` None: its parent is the hub. The relay proves who it is with
    its own token, of which only a SHA-256 digest is kept (the token is 256
    random bits: a slow hash adds nothing, and a relay authenticates often).
    """

    __tablename__ = "relays"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    url: Mapped[str] = mapped_column(String(300))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("relays.id", ondelete="RESTRICT"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Its last heartbeat as the hub last wrote it down (every few seconds at most): `relay list`
    # without Redis. Whether it is alive now is the node registry's to say (a key with a TTL).
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    unit: Mapped[Unit] = relationship(lazy="raise")
