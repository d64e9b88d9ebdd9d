"""The event stream of live sessions: every change, as a typed event with an id and a time.

The live domain (:class:`server.live.session.LiveSession`) produces these for
every change of a session; they reach their consumers through an
:class:`server.live.bus.EventBus` (the websocket broadcaster, the media
director, the floor-grant store, and later attendance, the recorder's
chapters and the relay link). Every event carries:

* ``id`` — unique (a random 128-bit hex string): consumers that store events
  make it a unique key, so an event delivered twice changes nothing;
* ``at`` — the server's wall clock (UTC) when the change happened;
* ``session_id`` — the session it belongs to (None for the few events about
  accounts rather than one session, e.g. :class:`UserSignedOut`).

Events are plain frozen data: :func:`to_dict` and :func:`from_dict` turn them
into JSON-ready dicts and back, for a bus between processes.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar

# A bridge point's database id (storage.models.BridgePoint.id).
PointId: TypeAlias = int


class LiveRole(enum.StrEnum):
    """A participant's role inside one live session (not the account role)."""

    HOST = "host"  # the central speaker at the hub
    HALL = "hall"  # a bridge point's operator, speaking for the whole hall
    MEMBER = "member"  # one person joining alone online


# What kind of connection an endpoint is: a websocket (a page), or an HTTP
# media resource without one (a WHIP publisher, a WHEP player).
EndpointKind: TypeAlias = Literal["socket", "whip", "whep"]

# Why a floor grant ended: the host took it back (or gave it to another point,
# or ended the session), its time limit passed, the point left, it was
# removed, or its connection dropped and did not come back within the grace
# period.
FloorEndReason: TypeAlias = Literal["revoked", "expired", "left", "removed", "dropped"]

# What the program shows: the floor holder when there is one (else the
# speaker), or always the speaker.
ProgramSource: TypeAlias = Literal["floor", "speaker"]


def hall_key(point_id: PointId) -> str:
    """The participant key of a bridge point's hall: the one place ``point:<id>`` is spelled."""
    return f"point:{point_id}"


def user_key(user_id: int) -> str:
    """The participant key of anyone who is not a hall (the speaker, a member)."""
    return f"user:{user_id}"


def relay_key(node: str) -> str:
    """The media key of a relay's uplink: a subscriber of the program, never a participant."""
    return f"relay:{node}"


@dataclass(frozen=True, slots=True)
class ParticipantRef:
    """Who an event is about: enough for any consumer without asking the roster.

    ``point_id`` is the hall's bridge point; a member has none (members in a
    hall check in separately), the host may carry the hub's.
    """

    key: str
    role: LiveRole
    user_id: int
    point_id: PointId | None
    display_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Common to every event; subclasses add what changed."""

    kind: ClassVar[str] = "event"

    id: str
    at: datetime
    session_id: int | None


# Lifecycle -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted(Event):
    """The session went live (its actual start is ``at``)."""

    kind: ClassVar[str] = "session_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionResumed(Event):
    """A server opened the room of a session that was live already (it restarted mid-session).

    What follows a live session from its start (the recorder) continues from here.
    """

    kind: ClassVar[str] = "session_resumed"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnded(Event):
    """The session ended; its room closes after this."""

    kind: ClassVar[str] = "session_ended"


# Endpoints -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointJoined(Event):
    """A connection of a participant joined; ``first`` when the participant had none open."""

    kind: ClassVar[str] = "endpoint_joined"

    endpoint_id: str
    endpoint_kind: EndpointKind
    participant: ParticipantRef
    first: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointLeft(Event):
    """A connection closed cleanly (the client said so); ``last`` when none is left open."""

    kind: ClassVar[str] = "endpoint_left"

    endpoint_id: str
    endpoint_kind: EndpointKind
    participant: ParticipantRef
    last: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointDropped(Event):
    """A connection was lost without a goodbye (network, reload, crash, too slow).

    A hall whose last connection drops keeps its floor and its raised hand
    for the grace period; see :class:`FloorEnded` with reason ``dropped``.
    """

    kind: ClassVar[str] = "endpoint_dropped"

    endpoint_id: str
    endpoint_kind: EndpointKind
    participant: ParticipantRef
    last: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantLost(Event):
    """A participant whose last connection dropped did not come back within the grace period."""

    kind: ClassVar[str] = "participant_lost"

    participant: ParticipantRef


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaStateChanged(Event):
    """What the media layer reports of a participant: receiving the program, publishing."""

    kind: ClassVar[str] = "media_state_changed"

    key: str
    receiving: bool
    publishing: bool


# The floor -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HandRaised(Event):
    kind: ClassVar[str] = "hand_raised"

    point_id: PointId


@dataclass(frozen=True, slots=True, kw_only=True)
class HandLowered(Event):
    """A hand left the queue without the floor being granted (withdrawn, dismissed, gone)."""

    kind: ClassVar[str] = "hand_lowered"

    point_id: PointId


@dataclass(frozen=True, slots=True, kw_only=True)
class FloorGranted(Event):
    """A point holds the floor; ``grant_id`` names this grant in its :class:`FloorEnded`."""

    kind: ClassVar[str] = "floor_granted"

    point_id: PointId
    grant_id: str
    limit_seconds: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FloorEnded(Event):
    """A grant ended: revoked by the host, expired, or the point left, was removed or dropped."""

    kind: ClassVar[str] = "floor_ended"

    point_id: PointId
    grant_id: str
    reason: FloorEndReason


# The program -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramSourceChanged(Event):
    """Whose picture the program should show changed (it goes on air at its next keyframe)."""

    kind: ClassVar[str] = "program_source_changed"

    source: ProgramSource
    key: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class OnAirChanged(Event):
    """The picture actually on air changed (the media switched, on the new source's keyframe)."""

    kind: ClassVar[str] = "on_air_changed"

    key: str | None


# Moderation ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantMuted(Event):
    """A hall's microphone was left out of the program mix, or put back."""

    kind: ClassVar[str] = "participant_muted"

    point_id: PointId
    muted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantRemoved(Event):
    """The host removed a participant for the rest of the session."""

    kind: ClassVar[str] = "participant_removed"

    participant: ParticipantRef


@dataclass(frozen=True, slots=True, kw_only=True)
class QuestionAsked(Event):
    """A written question for the hosts."""

    kind: ClassVar[str] = "question_asked"

    question_id: str
    participant: ParticipantRef
    sender_name: str
    text: str


# Quality ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QualityAlarm(Event):
    """A point needs the operator, or no longer does (``server.live.quality``).

    ``alarm`` is ``dropped`` (its last connection was lost), ``red`` (its
    link stayed past a red threshold; ``reasons`` say which) or
    ``recovered``. Raised once per episode, never again until it recovered.
    """

    kind: ClassVar[str] = "quality_alarm"

    point_id: PointId
    name: str
    alarm: str
    reasons: list[str]
    rtt_ms: float | None = None
    loss_pct: float | None = None
    jitter_ms: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PrecheckDone(Event):
    """A hall ran its connection test through the hub: what came back, and how fast."""

    kind: ClassVar[str] = "precheck_done"

    point_id: PointId
    user_id: int
    ok: bool
    rtt_ms: float | None
    bitrate_kbps: float | None
    video_frames: int
    audio: bool
    detail: str


# From outside the room: published by whoever changed the data --------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionChanged(Event):
    """The session was edited or cancelled outside its room: rooms reload it."""

    kind: ClassVar[str] = "session_changed"


@dataclass(frozen=True, slots=True, kw_only=True)
class UserSignedOut(Event):
    """The user's tokens were revoked (password, role, deactivation), or one of them (``token_id``:
    a sign-out): end the live connections that came with them."""

    kind: ClassVar[str] = "user_signed_out"

    user_id: int
    token_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserChanged(Event):
    """The user's account moved (another bridge point or unit): their live connections join afresh."""

    kind: ClassVar[str] = "user_changed"

    user_id: int


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        SessionStarted, SessionResumed, SessionEnded, EndpointJoined, EndpointLeft, EndpointDropped, ParticipantLost,
        MediaStateChanged,
        HandRaised, HandLowered, FloorGranted, FloorEnded, ProgramSourceChanged, OnAirChanged,
        ParticipantMuted, ParticipantRemoved, QuestionAsked, SessionChanged, UserSignedOut, UserChanged,
        QualityAlarm, PrecheckDone,
    )
}

E = TypeVar("E", bound=Event)


def new_id() -> str:
    return uuid.uuid4().hex


def make(cls: type[E], *, session_id: int | None = None, at: datetime | None = None,
         id: str | None = None, **fields: Any) -> E:
    """A new event of ``cls`` with a fresh id, stamped now unless ``at`` is given.

    The live domain passes its own clock's time; code outside it (a view
    publishing :class:`SessionChanged`) takes the defaults.
    """
    return cls(id=id or new_id(), at=at or datetime.now(UTC), session_id=session_id, **fields)


def to_dict(event: Event) -> dict[str, Any]:
    """JSON-ready fields, with ``kind`` first; datetimes as ISO 8601."""
    body: dict[str, Any] = {"kind": event.kind}
    for field in dataclasses.fields(event):
        body[field.name] = _plain(getattr(event, field.name))
    return body


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, ParticipantRef):
        return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    return value


def from_dict(body: Mapping[str, Any]) -> Event:
    """The event :func:`to_dict` made; ValueError for an unknown kind or a bad field."""
    cls = EVENT_TYPES.get(str(body.get("kind")))
    if cls is None:
        raise ValueError(f"unknown event kind {body.get('kind')!r}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in body:
            raise ValueError(f"{cls.kind}: missing {field.name}")
        values[field.name] = _typed(hints[field.name], body[field.name])
    return cls(**values)


_CONVERTERS: dict[Any, Callable[[Any], Any]] = {
    datetime: datetime.fromisoformat,
    LiveRole: LiveRole,
    ParticipantRef: lambda raw: ParticipantRef(
        key=raw["key"], role=LiveRole(raw["role"]), user_id=raw["user_id"], point_id=raw["point_id"],
        display_name=raw["display_name"]),
}


def _typed(hint: Any, raw: Any) -> Any:
    if raw is None:
        return None
    for kind in (hint, *typing.get_args(hint)):
        converter = _CONVERTERS.get(kind)
        if converter is not None:
            return converter(raw)
    return raw
