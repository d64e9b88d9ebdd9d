"""Time intervals as (start, end) pairs of POSIX seconds: union, intersection, length.

Every function takes intervals in any order, possibly overlapping or empty,
and returns a normalised list: sorted, disjoint, non-empty. Touching
intervals merge (a reconnect at the very second of the drop is one stay).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

Interval: TypeAlias = tuple[float, float]


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """The time covered by any of ``intervals``."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The time covered by both ``a`` and ``b``."""
    left, right = union(a), union(b)
    out: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i][0], right[j][0])
        end = min(left[i][1], right[j][1])
        if end > start:
            out.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def clip(intervals: Iterable[Interval], start: float, end: float) -> list[Interval]:
    """``intervals`` within [start, end]."""
    return intersect(intervals, [(start, end)])


def length(intervals: Iterable[Interval]) -> float:
    """Seconds covered (overlaps counted once)."""
    return sum(end - start for start, end in union(intervals))


def pair(events: Iterable[tuple[str, str, float]], *, open_until: float | None = None) -> list[Interval]:
    """Intervals from (endpoint, "join" | "end", time) events, in any order.

    Each endpoint's join opens an interval that its next end closes. An end
    without a join is ignored (tolerated, as when a join was never stored);
    a second join of the same endpoint without an end keeps the first; a
    join still open counts until ``open_until`` (now, for a live session), or
    not at all when it is None.
    """
    opened: dict[str, float] = {}
    out: list[Interval] = []
    # At the same instant a join sorts before an end: an endpoint closed at the very moment it
    # joined (a server stopped before its next heartbeat) is closed, not left open. A reconnect
    # at once is still one stay: the union merges touching intervals.
    for endpoint, what, at in sorted(events, key=lambda e: (e[2], e[1] == "end")):
        if what == "join":
            opened.setdefault(endpoint, at)
        elif endpoint in opened:
            out.append((opened.pop(endpoint), at))
    if open_until is not None:
        out.extend((start, max(start, open_until)) for start in opened.values())
    return union(out)
