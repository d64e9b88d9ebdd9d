"""Who is in one live session, keyed so that a reconnect is the same participant.

A hall is keyed by its bridge point (``point:<id>``), so an operator's browser
that reconnects, or a second operator taking over, stays the same hall; the
speaker and members are keyed by their user (``user:<id>``). A participant may
hold several connections at once (the old socket of a reconnecting hall has
not closed yet): it counts as connected until the last one closes.

Times are timezone-aware datetimes passed in by the caller: joined_at and
last_seen are shown to people and feed attendance. Nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, NamedTuple, TypeAlias

from server.live.errors import LiveError
from server.live.events import LiveRole, ParticipantRef, PointId, hall_key, user_key

# "reconnecting": the hall's connection dropped and the grace period is running.
RollCallState: TypeAlias = Literal["not_connected", "reconnecting", "connected", "receiving", "floor"]

# Why a participant left the roster: its last connection closed, or it was removed.
LeaveReason: TypeAlias = Literal["left", "removed"]


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


# What a Roster call changed; LiveSession turns these into stamped events.
RosterEvent: TypeAlias = ParticipantJoined | ParticipantLeft | ParticipantStateChanged


class RosterError(LiveError):
    """An operation the roster refuses; ``code`` is stable and sent to clients.

    Codes: ``bad_participant`` (role and ids do not fit together),
    ``role_conflict`` (the key is already in the session with another role),
    ``unknown_participant``, ``not_connected``, ``bad_time`` (a naive datetime).
    """


def participant_key(role: LiveRole, user_id: int, point_id: PointId | None = None) -> str:
    """The stable key: ``point:<id>`` for a hall, ``user:<id>`` for anyone else."""
    if role == LiveRole.HALL:
        if point_id is None:
            raise RosterError("bad_participant", "a hall joins for a bridge point")
        return hall_key(point_id)
    return user_key(user_id)


@dataclass(frozen=True, slots=True)
class Participant:
    """One participant as it is now; the roster replaces it rather than mutating it."""

    key: str
    user_id: int
    display_name: str
    role: LiveRole
    point_id: PointId | None
    joined_at: datetime
    last_seen: datetime
    connection_ids: frozenset[str] = field(default_factory=frozenset)
    receiving_media: bool = False
    publishing: bool = False

    @property
    def connected(self) -> bool:
        """True while at least one connection is open."""
        return bool(self.connection_ids)

    @property
    def ref(self) -> ParticipantRef:
        """Who this is, for events."""
        return ParticipantRef(self.key, self.role, self.user_id, self.point_id, self.display_name)

    @property
    def connections(self) -> int:
        """How many connections are open (2 briefly while a hall reconnects)."""
        return len(self.connection_ids)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready fields; connection ids stay server-side."""
        return {
            "key": self.key,
            "user_id": self.user_id,
            "display_name": self.display_name,
            "role": self.role.value,
            "point_id": self.point_id,
            "connected": self.connected,
            "connections": self.connections,
            "receiving_media": self.receiving_media,
            "publishing": self.publishing,
            "joined_at": self.joined_at.isoformat(),
            "last_seen": self.last_seen.isoformat(),
        }


class RollCallEntry(NamedTuple):
    """One invited bridge point and its state on the roll-call board."""

    point_id: PointId
    state: RollCallState


def _check_time(now: datetime) -> None:
    # Naive and aware datetimes cannot be compared; refuse early, not in a report later.
    if now.tzinfo is None or now.utcoffset() is None:
        raise RosterError("bad_time", "times must be timezone-aware")


class Roster:
    """The participants of one session, in the order they first joined."""

    def __init__(self) -> None:
        self._by_key: dict[str, Participant] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    @property
    def participants(self) -> tuple[Participant, ...]:
        """Everyone known to the session, connected or not."""
        return tuple(self._by_key.values())

    def get(self, key: str) -> Participant | None:
        """The participant with this key, or None."""
        return self._by_key.get(key)

    def by_point(self, point_id: PointId) -> Participant | None:
        """The hall participant of a bridge point, or None."""
        return self._by_key.get(hall_key(point_id))

    def join(
        self,
        *,
        connection_id: str,
        role: LiveRole,
        user_id: int,
        display_name: str,
        now: datetime,
        point_id: PointId | None = None,
    ) -> tuple[Participant, list[RosterEvent]]:
        """Add a connection, creating the participant or rejoining it.

        Emits ParticipantJoined only when the participant goes from no
        connection to one; a second socket of a connected participant (or a
        repeated connection id) is counted silently. A hall needs ``point_id``;
        a member must not have one (members in a hall check in separately);
        the host may carry the hub's point id.
        """
        _check_time(now)
        if role == LiveRole.MEMBER and point_id is not None:
            raise RosterError("bad_participant", "a member joins for themself, not for a bridge point")
        key = participant_key(role, user_id, point_id)
        old = self._by_key.get(key)
        if old is not None and old.role != role:
            raise RosterError("role_conflict", f"{key} is already in this session as {old.role.value}")

        if old is None:
            participant = Participant(
                key, user_id, display_name, role, point_id, now, now, frozenset({connection_id})
            )
        else:
            # The latest login speaks for the hall (another operator may take over).
            participant = replace(
                old,
                user_id=user_id,
                display_name=display_name,
                point_id=point_id,
                last_seen=now,
                connection_ids=old.connection_ids | {connection_id},
            )
        self._by_key[key] = participant

        if old is not None and old.connected:
            return participant, []
        return participant, [ParticipantJoined(key, role, display_name, point_id, now)]

    def leave(self, key: str, connection_id: str, now: datetime) -> list[RosterEvent]:
        """Close one connection; the participant leaves when its last one closes.

        An unknown key or connection is ignored: a socket of a removed
        participant closes after the removal, and attendance tolerates a leave
        without a join.
        """
        _check_time(now)
        old = self._by_key.get(key)
        if old is None or connection_id not in old.connection_ids:
            return []
        remaining = old.connection_ids - {connection_id}
        if remaining:
            self._by_key[key] = replace(old, connection_ids=remaining, last_seen=now)
            return []
        # Media stops with the last socket; stale flags would show a ghost as receiving.
        self._by_key[key] = replace(
            old, connection_ids=frozenset(), last_seen=now, receiving_media=False, publishing=False
        )
        return [ParticipantLeft(key, old.point_id, now, "left")]

    def set_media(
        self,
        key: str,
        now: datetime,
        *,
        receiving: bool | None = None,
        publishing: bool | None = None,
    ) -> list[RosterEvent]:
        """Record what the media layer reports; None leaves a flag as it is.

        Whether the participant may publish is not checked here (see
        permissions.may_publish). Raises RosterError("unknown_participant")
        or RosterError("not_connected").
        """
        _check_time(now)
        old = self._require(key)
        if not old.connected:
            raise RosterError("not_connected", f"{key} has no open connection")
        new = replace(
            old,
            last_seen=now,
            receiving_media=old.receiving_media if receiving is None else receiving,
            publishing=old.publishing if publishing is None else publishing,
        )
        self._by_key[key] = new
        if (new.receiving_media, new.publishing) == (old.receiving_media, old.publishing):
            return []
        return [ParticipantStateChanged(key, new.receiving_media, new.publishing)]

    def remove(self, key: str, now: datetime) -> tuple[Participant, list[RosterEvent]]:
        """Remove (kick) a participant and forget it.

        Returns the participant as it was, so the caller can close its
        connections, and ParticipantLeft(reason="removed") so clients drop the
        row. A later join starts a new participant: refusing a kicked one is
        the caller's policy, not the roster's. Raises
        RosterError("unknown_participant").
        """
        _check_time(now)
        old = self._require(key)
        del self._by_key[key]
        return old, [ParticipantLeft(key, old.point_id, now, "removed")]

    def roll_call(
        self, invited_point_ids: Iterable[PointId], floor_holder: PointId | None,
        reconnecting: frozenset[str] = frozenset(),
    ) -> list[RollCallEntry]:
        """The state of every invited bridge point, in invited order (duplicates once).

        "floor" needs a live connection: a holder whose socket is gone is shown
        as "reconnecting" while its grace period runs (keys in ``reconnecting``),
        else "not_connected", because the board must show the link as it is.
        """
        entries: list[RollCallEntry] = []
        seen: set[PointId] = set()
        for point_id in invited_point_ids:
            if point_id in seen:
                continue
            seen.add(point_id)
            entries.append(RollCallEntry(point_id, self._point_state(point_id, floor_holder, reconnecting)))
        return entries

    def snapshot(self) -> list[dict[str, object]]:
        """Every participant as a plain dict, in first-join order, for a roster message."""
        return [p.to_dict() for p in self._by_key.values()]

    def _point_state(self, point_id: PointId, floor_holder: PointId | None,
                     reconnecting: frozenset[str]) -> RollCallState:
        hall = self.by_point(point_id)
        if hall is None or not hall.connected:
            return "reconnecting" if hall is not None and hall.key in reconnecting else "not_connected"
        if point_id == floor_holder:
            return "floor"
        return "receiving" if hall.receiving_media else "connected"

    def _require(self, key: str) -> Participant:
        participant = self._by_key.get(key)
        if participant is None:
            raise RosterError("unknown_participant", f"{key} is not in this session")
        return participant
