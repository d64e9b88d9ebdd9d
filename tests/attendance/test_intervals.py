"""Interval arithmetic: a table of cases, then properties that must hold for any input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.attendance import intervals as iv


@pytest.mark.parametrize(("given_", "expected"), [
    ([], []),
    ([(0, 10)], [(0, 10)]),
    ([(5, 5)], []),  # empty
    ([(10, 5)], []),  # reversed is empty
    ([(0, 10), (5, 15)], [(0, 15)]),  # overlap
    ([(5, 15), (0, 10)], [(0, 15)]),  # any order
    ([(0, 10), (10, 20)], [(0, 20)]),  # touching: one stay
    ([(0, 10), (11, 20)], [(0, 10), (11, 20)]),
    ([(0, 100), (10, 20), (30, 40)], [(0, 100)]),  # contained
    ([(0, 10), (0, 10)], [(0, 10)]),  # duplicate (two tabs opened together)
])
def test_union(given_: list[iv.Interval], expected: list[iv.Interval]) -> None:
    assert iv.union(given_) == expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    ([(0, 10)], [(5, 15)], [(5, 10)]),
    ([(0, 10)], [(10, 20)], []),
    ([(0, 1500), (2100, 3600)], [(-600, 4000)], [(0, 1500), (2100, 3600)]),
    ([(0, 3600)], [(1500, 2100)], [(1500, 2100)]),
    ([], [(0, 10)], []),
])
def test_intersect(a: list[iv.Interval], b: list[iv.Interval], expected: list[iv.Interval]) -> None:
    assert iv.intersect(a, b) == expected
    assert iv.intersect(b, a) == expected


@pytest.mark.parametrize(("events", "open_until", "expected"), [
    ([("a", "join", 0), ("a", "end", 10)], None, [(0, 10)]),
    ([("a", "end", 10), ("a", "join", 0)], None, [(0, 10)]),  # stored out of order
    ([("a", "join", 0)], None, []),  # open, and nothing to close it
    ([("a", "join", 0)], 30, [(0, 30)]),  # open until now / the end
    ([("a", "end", 5)], 30, []),  # an end without its join
    ([("a", "join", 0), ("a", "join", 5), ("a", "end", 10)], None, [(0, 10)]),  # a second join keeps the first
    ([("a", "join", 0), ("a", "end", 10), ("b", "join", 10), ("b", "end", 20)], None, [(0, 20)]),  # reconnect
    ([("a", "join", 0), ("a", "end", 10), ("b", "join", 5), ("b", "end", 20)], None, [(0, 20)]),  # two tabs
    # Closed the moment it joined (a server stopped before its next heartbeat): closed, never open to the end.
    ([("a", "join", 10), ("a", "end", 10)], 1000, []),
    ([("a", "end", 10), ("a", "join", 10)], 1000, []),
])
def test_pair(events: list[tuple[str, str, float]], open_until: float | None, expected: list[iv.Interval]) -> None:
    assert iv.pair(events, open_until=open_until) == expected


times = st.integers(min_value=-10_000, max_value=20_000)
intervals = st.lists(st.tuples(times, times), max_size=30)


@given(intervals)
def test_union_is_idempotent_sorted_and_disjoint(given_: list[iv.Interval]) -> None:
    merged = iv.union(given_)
    assert iv.union(merged) == merged
    assert all(start < end for start, end in merged)
    assert all(a[1] < b[0] for a, b in zip(merged, merged[1:], strict=False))


@given(st.lists(st.tuples(times, times), max_size=30), st.randoms())
def test_union_ignores_order(given_: list[iv.Interval], random: object) -> None:
    shuffled = list(given_)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    assert iv.union(shuffled) == iv.union(given_)


@given(intervals, st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=10_000))
def test_clipped_union_never_exceeds_the_live_duration(given_: list[iv.Interval], start: int, duration: int) -> None:
    clipped = iv.clip(given_, start, start + duration)
    assert iv.length(clipped) <= duration
    assert all(start <= a and b <= start + duration for a, b in clipped)


@given(intervals, intervals)
def test_union_length_is_at_most_the_sum_and_at_least_the_largest(a: list[iv.Interval],
                                                                  b: list[iv.Interval]) -> None:
    both = iv.length([*a, *b])
    assert both <= iv.length(a) + iv.length(b)
    assert both >= max(iv.length(a), iv.length(b))
    assert iv.length(iv.intersect(a, b)) == iv.length(a) + iv.length(b) - both
