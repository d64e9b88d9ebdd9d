"""The floor of one live session: who may speak to everyone, and who is waiting.

One bridge point at most holds the floor. Others raise their hand and wait in
the order they raised it; the host grants the floor to any point, queued or
not, because a host may call on a hall that has not asked. Floor knows nothing
of connections: the caller checks that a point is connected before granting,
and calls ``forget`` when a point leaves.

All times are monotonic seconds passed in by the caller; nothing here reads a
clock, so the same calls always give the same results.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeAlias

from server.live.errors import LiveError
from server.live.events import FloorEndReason, PointId

# An hour: longer than any question from a hall; a longer "limit" is a typo.
MAX_LIMIT_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Raised:
    """A point joined the end of the hand queue at monotonic time ``at``."""

    point_id: PointId
    at: float


@dataclass(frozen=True, slots=True)
class Lowered:
    """A point left the hand queue without being granted the floor."""

    point_id: PointId


@dataclass(frozen=True, slots=True)
class Granted:
    """A point now holds the floor; it has also left the hand queue."""

    point_id: PointId
    limit_seconds: float | None
    at: float
    grant_id: str = ""


@dataclass(frozen=True, slots=True)
class Ended:
    """A point no longer holds the floor."""

    point_id: PointId
    at: float
    reason: FloorEndReason
    grant_id: str = ""


# What a Floor call changed; LiveSession turns these into stamped events.
FloorChange: TypeAlias = Raised | Lowered | Granted | Ended


class FloorError(LiveError):
    """An operation the floor refuses; ``code`` is stable and sent to clients.

    Codes: ``holds_floor`` (the point already holds the floor),
    ``bad_limit`` (a time limit outside (0, 3600] seconds).
    """


@dataclass(frozen=True, slots=True)
class FloorGrant:
    """One period during which a point held the floor (open while ``ended_at`` is None)."""

    point_id: PointId
    started_at: float
    limit_seconds: float | None = None
    ended_at: float | None = None
    end_reason: FloorEndReason | None = None
    grant_id: str = ""

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    @property
    def deadline(self) -> float | None:
        """When the time limit runs out, or None without a limit."""
        if self.limit_seconds is None:
            return None
        return self.started_at + self.limit_seconds

    def duration(self, now: float) -> float:
        """Seconds held; an open grant counts up to ``now``."""
        end = self.ended_at if self.ended_at is not None else now
        # A caller mixing clocks must not produce negative talk time.
        return max(0.0, end - self.started_at)


def _check_limit(limit_seconds: float | None) -> None:
    if limit_seconds is None:
        return
    # bool is an int subclass: True would silently mean one second.
    if isinstance(limit_seconds, bool) or not isinstance(limit_seconds, int | float):
        raise FloorError("bad_limit", "the time limit must be a number of seconds")
    # NaN fails every comparison, so it is refused here too.
    if not (0 < limit_seconds <= MAX_LIMIT_SECONDS):
        raise FloorError(
            "bad_limit", f"the time limit must be more than 0 and at most {MAX_LIMIT_SECONDS:g} seconds"
        )


class Floor:
    """The hand queue and floor grants of one session.

    Every method that changes something returns the events to broadcast, in
    the order they happened; an empty list means nothing changed.
    """

    def __init__(self) -> None:
        # point -> when it raised its hand; dicts keep insertion order, which is the queue order.
        self._queue: dict[PointId, float] = {}
        self._history: list[FloorGrant] = []

    @property
    def queue(self) -> tuple[PointId, ...]:
        """Points with a raised hand, first raised first."""
        return tuple(self._queue)

    @property
    def current(self) -> FloorGrant | None:
        """The open grant, or None when nobody holds the floor."""
        if self._history and self._history[-1].is_open:
            return self._history[-1]
        return None

    @property
    def holder(self) -> PointId | None:
        """The point holding the floor, or None."""
        grant = self.current
        return grant.point_id if grant is not None else None

    @property
    def history(self) -> tuple[FloorGrant, ...]:
        """Every grant in the order given, the open one (if any) last."""
        return tuple(self._history)

    def raised_at(self, point_id: PointId) -> float | None:
        """When the point raised its hand, or None if it is not queued."""
        return self._queue.get(point_id)

    def raise_hand(self, point_id: PointId, now: float) -> list[FloorChange]:
        """Queue the point at the end; raising again keeps its place.

        Raises FloorError("holds_floor") if the point already holds the floor.
        """
        if point_id == self.holder:
            raise FloorError("holds_floor", "this point already holds the floor")
        if point_id in self._queue:
            # A double click or a retried message must not cost the hall its place.
            return []
        self._queue[point_id] = now
        return [Raised(point_id, now)]

    def lower_hand(self, point_id: PointId) -> list[FloorChange]:
        """Take the point out of the queue; a point not queued is not an error.

        Idempotent because the hall and the host may both lower the same hand
        at once, and the hand may already be gone because the floor was granted.
        """
        if self._queue.pop(point_id, None) is None:
            return []
        return [Lowered(point_id)]

    def grant(self, point_id: PointId, now: float, limit_seconds: float | None = None,
              grant_id: str = "") -> list[FloorChange]:
        """Give the point the floor, optionally for at most ``limit_seconds``.

        The point need not have raised its hand; if it had, it leaves the queue
        (Granted says so, no Lowered is sent). A previous holder is
        revoked first with reason "revoked". Raises FloorError("bad_limit") or
        FloorError("holds_floor") if the point already holds the floor (to
        change a limit, revoke and grant again: each grant is one chapter).
        """
        _check_limit(limit_seconds)
        if point_id == self.holder:
            raise FloorError("holds_floor", "this point already holds the floor")
        events = self.revoke(now, "revoked")
        self._queue.pop(point_id, None)
        self._history.append(FloorGrant(point_id, now, limit_seconds, grant_id=grant_id))
        events.append(Granted(point_id, limit_seconds, now, grant_id))
        return events

    def revoke(self, now: float, reason: FloorEndReason = "revoked") -> list[FloorChange]:
        """End the current grant; with nobody holding the floor, nothing happens.

        Idempotent because the host's "take back" and the time limit can race.
        """
        grant = self.current
        if grant is None:
            return []
        # Never end before the start, even if the caller's clock went backwards.
        ended_at = max(now, grant.started_at)
        self._history[-1] = replace(grant, ended_at=ended_at, end_reason=reason)
        return [Ended(grant.point_id, ended_at, reason, grant.grant_id)]

    def expire(self, now: float) -> list[FloorChange]:
        """Revoke with reason "expired" if the holder's time limit has passed.

        The grant ends at ``now``, not at the deadline: the hall was on air
        until the caller's tick noticed, and chapters must match the recording.
        """
        grant = self.current
        if grant is None or grant.deadline is None or now < grant.deadline:
            return []
        return self.revoke(now, "expired")

    def remaining(self, now: float) -> float | None:
        """Seconds left of the current grant's limit (never negative), or None."""
        grant = self.current
        if grant is None or grant.deadline is None:
            return None
        return max(0.0, grant.deadline - now)

    def forget(self, point_id: PointId, now: float, reason: FloorEndReason = "left") -> list[FloorChange]:
        """Drop a point that left, was removed or dropped for good: lower its hand, end its floor."""
        events = self.lower_hand(point_id)
        if point_id == self.holder:
            events.extend(self.revoke(now, reason))
        return events

    def talk_time(self, point_id: PointId, now: float) -> float:
        """Total seconds the point has held the floor, an open grant counted up to ``now``."""
        return sum(g.duration(now) for g in self._history if g.point_id == point_id)
