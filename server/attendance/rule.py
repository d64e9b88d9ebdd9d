"""The credit rule: a member's intervals become attended, partial or absent.

The rule is data (``CreditRule``), configured in ``[attendance]`` and printed
on every report, so nobody has to guess how a status was decided.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass
from typing import Any

from server.attendance.intervals import Interval, clip, length, union


class Status(enum.StrEnum):
    ATTENDED = "attended"
    PARTIAL = "partial"
    ABSENT = "absent"


@dataclass(frozen=True)
class CreditRule:
    """Attended: credited for at least ``attended_percent`` of the live duration.

    Partial: credited for some of it, less than that; absent: none. Late
    arrival and early leave are flagged when they pass their tolerance.
    ``replay_seconds`` (study of the recording) adds to the credited time,
    capped at the live duration; it is 0 until the archive counts replays.
    """

    attended_percent: int = 80
    late_after_minutes: int = 5
    early_before_minutes: int = 5

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def status(self, credited_seconds: float, duration: float) -> Status:
        """What ``credited_seconds`` of a live duration of ``duration`` seconds count for."""
        if duration <= 0 or credited_seconds <= 0:
            return Status.ABSENT
        if credited_seconds * 100 >= self.attended_percent * duration:
            return Status.ATTENDED
        return Status.PARTIAL


@dataclass(frozen=True)
class Credit:
    live_seconds: int
    replay_seconds: int
    credited_seconds: int
    status: Status
    late_minutes: int
    early_minutes: int


def credit(rule: CreditRule, live: Interval | None, present: list[Interval], replay_seconds: int = 0) -> Credit:
    """Classify presence ``present`` (any intervals) against the session's live interval ``live``.

    Without a live interval (the session never went live) everyone is absent.
    """
    if live is None or live[1] <= live[0]:
        return Credit(0, 0, 0, Status.ABSENT, 0, 0)
    start, end = live
    duration = end - start
    inside = union(clip(present, start, end))
    live_seconds = int(length(inside))
    credited = min(int(duration), live_seconds + max(0, replay_seconds))
    status = rule.status(credited, duration)
    late = early = 0
    if inside:
        late_seconds = inside[0][0] - start
        early_seconds = end - inside[-1][1]
        if late_seconds > rule.late_after_minutes * 60:
            late = math.floor(late_seconds / 60)
        if early_seconds > rule.early_before_minutes * 60:
            early = math.floor(early_seconds / 60)
    return Credit(live_seconds, max(0, replay_seconds), credited, status, late, early)
