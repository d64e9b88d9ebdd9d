"""The credit rule: a member's intervals become attended, partial or absent.

The rule is data (``CreditRule``), configured in ``[attendance]`` and printed
on every report, so nobody has to guess how a status was decided.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
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

    Partial: credited for some of it, less than that; absent: none. The
    credited time is the union, within the live interval, of live presence
    and replay (study of the recording, mapped to the session clock: the
    moments whose media was played): a member who watched the first half
    live and the second half in replay is credited the whole, and a part
    watched both live and in replay counts once. Late arrival and early
    leave are flagged from live presence only, when they pass their tolerance.
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


def credit(rule: CreditRule, live: Interval | None, present: list[Interval],
           replay: Iterable[Interval] = ()) -> Credit:
    """Classify presence ``present`` and replay ``replay`` against the session's live interval ``live``.

    ``present`` and ``replay`` are any intervals of the session clock
    (``replay`` as mapped by ``server.attendance.replay.to_session_clock``);
    both are clipped to ``live``. Without a live interval (the session never
    went live) everyone is absent.
    """
    if live is None or live[1] <= live[0]:
        return Credit(0, 0, 0, Status.ABSENT, 0, 0)
    start, end = live
    duration = end - start
    inside = union(clip(present, start, end))
    replayed = union(clip(replay, start, end))
    live_seconds = int(length(inside))
    replay_seconds = int(length(replayed))
    # The union is never shorter than either part; max() only guards against float rounding.
    credited = max(live_seconds, replay_seconds, int(length([*inside, *replayed])))
    status = rule.status(credited, duration)
    late = early = 0
    if inside:
        late_seconds = inside[0][0] - start
        early_seconds = end - inside[-1][1]
        if late_seconds > rule.late_after_minutes * 60:
            late = math.floor(late_seconds / 60)
        if early_seconds > rule.early_before_minutes * 60:
            early = math.floor(early_seconds / 60)
    return Credit(live_seconds, replay_seconds, credited, status, late, early)
