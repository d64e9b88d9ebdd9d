"""Replay credit: the media time a member played of a session's recording, as the server checks it.

The player reports the ranges of media time (seconds from the start of the
recording) it has played, cumulatively: every report carries everything
played so far in this page, so a report lost or refused in part costs
nothing. The server keeps the union per member per recording (a ``Ledger``)
and does not trust the client's arithmetic:

* ``parse_ranges`` refuses anything that is not a list of ``[from, to]``
  pairs of finite numbers inside the recording (with ``EDGE_TOLERANCE`` at
  the end, where a player's clock may run a little past the last frame).
* ``accept`` credits only media time the ledger does not already hold
  (watching the same minute twice counts once), and at most ``max_speed``
  seconds of it per second of server wall time since the previous report:
  nobody is credited an hour of lecture for a request sent a minute after
  the last one, however many tabs report for them. The first report only
  starts the clock, so the player sends an empty report (``{"ranges": []}``)
  when playback starts, then reports every few seconds while it plays.

The allowance bounds credit by wall time, it does not prove anyone watched:
a claim after a long pause is allowed as long as the wall time since the
previous report covers it at ``max_speed``.

``to_session_clock`` maps media time to the wall-clock intervals of the
session when that media was live, which is what the credit rule counts.

Pure: the standard library and ``server.attendance.intervals`` only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from server.attendance.intervals import Interval, clip, length, union

MAX_SPEED = 2.0
"""The highest playback speed the player offers."""
MAX_RANGES = 500
"""Ranges at most in one report."""
EDGE_TOLERANCE = 1.0
"""Seconds a range may end past the end of the recording; it is clipped to the end."""


class BadRanges(ValueError):
    """A report's ranges are refused; ``code`` is stable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _number(value: object, index: int, which: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRanges("not_a_number", f"range {index}: {which} is not a number")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float: far outside any recording
        raise BadRanges("outside_recording", f"range {index}: {which} is outside the recording") from None
    if not math.isfinite(number):
        raise BadRanges("not_finite", f"range {index}: {which} is not a finite number")
    return number


def parse_ranges(raw: object, duration: float) -> list[Interval]:
    """The union of the ranges in ``raw`` (the JSON value of ``{"ranges": ...}``), for a recording of ``duration`` s.

    ``raw`` must be a list of at most ``MAX_RANGES`` ``[from, to]`` pairs of
    numbers (not booleans), finite, with ``0 <= from < to <= duration +
    EDGE_TOLERANCE``. A range outside the recording is refused (``BadRanges``),
    not clipped; only the part of a range inside the tolerance is clipped to
    ``duration`` (a range lying wholly inside the tolerance is then empty and
    dropped). An empty list is valid: it starts the member's clock.
    """
    if not math.isfinite(duration) or duration < 0:
        raise ValueError(f"a recording's duration must be a finite number of seconds >= 0, not {duration!r}")
    if not isinstance(raw, list):
        raise BadRanges("not_a_list", "ranges must be a list of [from, to] pairs")
    if len(raw) > MAX_RANGES:
        raise BadRanges("too_many", f"at most {MAX_RANGES} ranges in one report, not {len(raw)}")
    out: list[Interval] = []
    for index, item in enumerate(raw):
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise BadRanges("not_a_pair", f"range {index} is not a [from, to] pair")
        start = _number(item[0], index, "from")
        end = _number(item[1], index, "to")
        if not start < end:
            raise BadRanges("empty_or_reversed", f"range {index}: from ({start:g}) must be less than to ({end:g})")
        if start < 0 or end > duration + EDGE_TOLERANCE:
            raise BadRanges("outside_recording",
                            f"range {index} ({start:g}-{end:g}) is outside the recording (0-{duration:g})")
        out.append((start, min(end, duration)))
    return union(out)


@dataclass(frozen=True)
class Ledger:
    """What a member has been credited of one recording so far.

    ``ranges``: the union credited, in media seconds (sorted, disjoint, never
    empty intervals); ``last_report_at``: the server's wall clock (epoch
    seconds) at the previous report, None before the first.
    """

    ranges: tuple[Interval, ...] = ()
    last_report_at: float | None = None

    @property
    def credited_seconds(self) -> float:
        return float(length(self.ranges))


@dataclass(frozen=True)
class Accepted:
    """The outcome of one report.

    ``added_seconds``: new media time credited by this report;
    ``refused_seconds``: new media time claimed beyond the allowance and not
    credited now (the client resends its cumulative ranges, so it is credited
    by a later report if it was real).
    """

    ledger: Ledger
    added_seconds: float
    refused_seconds: float


def _subtract(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The time covered by ``a`` and not by ``b``."""
    right = union(b)
    out: list[Interval] = []
    j = 0
    for start, end in union(a):
        while j < len(right) and right[j][1] <= start:
            j += 1
        k = j
        cursor = start
        while k < len(right) and right[k][0] < end:
            if right[k][0] > cursor:
                out.append((cursor, right[k][0]))
            cursor = max(cursor, right[k][1])
            k += 1
        if cursor < end:
            out.append((cursor, end))
    return out


def accept(ledger: Ledger, claimed: list[Interval], now: float, *, max_speed: float = MAX_SPEED) -> Accepted:
    """Credit the media time ``claimed`` (any intervals, as from ``parse_ranges``) at server time ``now``.

    New time is ``claimed`` minus what ``ledger`` already holds. The allowance
    is ``max_speed`` times the wall time since the previous report: 0 for the
    first report (it only starts the clock) and 0, never negative, when the
    clock stepped back. New time is credited from the earliest media time
    onward up to the allowance; the rest is refused for now. The new ledger's
    ``last_report_at`` is ``now``, or the previous one if that is later.
    """
    new = _subtract(claimed, ledger.ranges)
    claimed_new = length(new)
    last = ledger.last_report_at
    allowance = 0.0 if last is None else max(0.0, max_speed * (now - last))
    taken: list[Interval] = []
    left = allowance
    for start, end in new:
        if left <= 0:
            break
        stop = min(end, start + left)
        if stop > start:
            taken.append((start, stop))
        left -= stop - start
    added = length(taken)
    ranges = tuple(union([*ledger.ranges, *taken]))
    next_last = now if last is None else max(last, now)
    return Accepted(Ledger(ranges, next_last), float(added), float(max(0.0, claimed_new - added)))


@dataclass(frozen=True)
class Part:
    """One part of a recording (a server restart starts a new part).

    ``offset``: media seconds where this part begins in the recording;
    ``duration``: its length in seconds; ``started_at``: the session's wall
    clock (epoch seconds) when the part's media time 0 was live.
    """

    offset: float
    duration: float
    started_at: float


def to_session_clock(ranges: Iterable[Interval], parts: Sequence[Part]) -> list[Interval]:
    """The wall-clock intervals of the session when the media ``ranges`` were live.

    Media time is continuous across parts; wall time has a gap between parts
    where the server restarted. Media outside every part is dropped.
    """
    media = union(ranges)
    out: list[Interval] = []
    for part in parts:
        shift = part.started_at - part.offset
        for start, end in clip(media, part.offset, part.offset + part.duration):
            out.append((start + shift, end + shift))
    return union(out)


def _compact(value: float) -> float | int:
    rounded = round(value, 3)
    return int(rounded) if rounded.is_integer() else rounded


def ledger_to_json(ledger: Ledger) -> str:
    """``ledger.ranges`` as a compact JSON list of ``[from, to]`` pairs, rounded to 3 decimals (for a Text column).

    ``last_report_at`` is not in it: it is stored on its own.
    """
    pairs = union((round(a, 3), round(b, 3)) for a, b in ledger.ranges)
    return json.dumps([[_compact(a), _compact(b)] for a, b in pairs], separators=(",", ":"), allow_nan=False)


def ledger_from_json(text: str | None, *, last_report_at: float | None = None) -> Ledger:
    """The ledger stored as ``text`` by ``ledger_to_json``; empty for an empty or None text.

    A corrupted text (not JSON, not a list of pairs of finite numbers with
    ``0 <= from < to``) raises ValueError.
    """
    if text is None or not text.strip():
        return Ledger((), last_report_at)
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise ValueError(f"a replay ledger is not JSON: {error}") from None
    if not isinstance(raw, list):
        raise ValueError("a replay ledger is not a list of ranges")
    out: list[Interval] = []
    for item in raw:
        if (not isinstance(item, list) or len(item) != 2
                or any(isinstance(v, bool) or not isinstance(v, int | float) for v in item)):
            raise ValueError(f"a replay ledger holds {item!r}, not a [from, to] pair of numbers")
        try:
            start, end = float(item[0]), float(item[1])
        except OverflowError:
            raise ValueError(f"a replay ledger holds the range {item!r}") from None
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise ValueError(f"a replay ledger holds the range {item!r}")
        out.append((start, end))
    return Ledger(tuple(union(out)), last_report_at)
