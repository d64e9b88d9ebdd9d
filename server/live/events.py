"""Domain events of a live session, and the small vocabulary they share.

Floor and Roster return these from every call that changes them instead of
calling out, so the signaling layer decides how to broadcast them and tests
compare them by value.

Two clocks, on purpose: floor events carry monotonic seconds (talk limits and
durations must not jump when the wall clock is corrected), roster events carry
timezone-aware datetimes (they become attendance records and are shown to
people).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias

# A bridge point's database id (storage.models.BridgePoint.id).
PointId: TypeAlias = int


class LiveRole(enum.StrEnum):
    """A participant's role inside one live session (not the account role)."""

    HOST = "host"  # the central speaker at the hub
    HALL = "hall"  # a bridge point's operator, speaking for the whole hall
    MEMBER = "member"  # one person joining alone online


# Why a floor grant ended: the host took it back (or gave it to another
# point), its time limit passed, the point disconnected, or it was removed.
FloorEndReason: TypeAlias = Literal["revoked", "expired", "left", "removed"]

# Why a participant left the roster: its last connection closed, or it was removed.
LeaveReason: TypeAlias = Literal["left", "removed"]


@dataclass(frozen=True, slots=True)
class HandRaised:
    """A point joined the end of the hand queue at monotonic time ``at``."""

    point_id: PointId
    at: float


@dataclass(frozen=True, slots=True)
class HandLowered:
    """A point left the hand queue without being granted the floor."""

    point_id: PointId


@dataclass(frozen=True, slots=True)
class FloorGranted:
    """A point now holds the floor; it has also left the hand queue."""

    point_id: PointId
    limit_seconds: float | None
    at: float


@dataclass(frozen=True, slots=True)
class FloorRevoked:
    """A point no longer holds the floor."""

    point_id: PointId
    at: float
    reason: FloorEndReason


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    """A participant went from no connection to one (first join or rejoin)."""

    key: str
    role: LiveRole
    display_name: str
    point_id: PointId | None
    at: datetime


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    """A participant's last connection closed, or it was removed from the roster.

    ``point_id`` is carried so the caller can tell the Floor to forget the point.
    """

    key: str
    point_id: PointId | None
    at: datetime
    reason: LeaveReason


@dataclass(frozen=True, slots=True)
class ParticipantStateChanged:
    """A connected participant's media flags changed."""

    key: str
    receiving_media: bool
    publishing: bool


FloorEvent: TypeAlias = HandRaised | HandLowered | FloorGranted | FloorRevoked
RosterEvent: TypeAlias = ParticipantJoined | ParticipantLeft | ParticipantStateChanged
Event: TypeAlias = FloorEvent | RosterEvent
