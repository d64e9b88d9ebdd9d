"""Replay credit: what a member's reports of played media time are credited, as tables of exact cases."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.attendance import intervals as iv
from server.attendance.intervals import Interval
from server.attendance.replay import (
    EDGE_TOLERANCE,
    MAX_RANGES,
    MAX_SPEED,
    Accepted,
    BadRanges,
    Ledger,
    Part,
    accept,
    ledger_from_json,
    ledger_to_json,
    parse_ranges,
    to_session_clock,
)

T = 1_700_000_000.0  # the server's wall clock at the first report

# One step: (wall seconds after T, claimed media ranges, expected added, expected refused).
Step = tuple[float, list[Interval], float, float]


@pytest.mark.parametrize(("steps", "ranges", "last"), [
    pytest.param([(0, [(0, 30)], 0, 30)], [], 0, id="first report: clock only, nothing credited even if claimed"),
    pytest.param([(0, [], 0, 0)], [], 0, id="first report empty: the player starting playback"),
    pytest.param([(0, [], 0, 0), (5, [(0, 5)], 5, 0), (10, [(0, 10)], 5, 0), (15, [(0, 15)], 5, 0)],
                 [(0, 15)], 15, id="steady 1x play reported every 5 s"),
    pytest.param([(0, [], 0, 0), (5, [(0, 10)], 10, 0), (10, [(0, 20)], 10, 0)],
                 [(0, 20)], 10, id="2x play: exactly at the allowance"),
    pytest.param([(0, [], 0, 0), (5, [(0, 15)], 10, 5), (10, [(0, 30)], 10, 10), (15, [(0, 30)], 10, 0),
                  (20, [(0, 30)], 0, 0)],
                 [(0, 30)], 20, id="3x claimed: a third refused, credited later as the client resends"),
    pytest.param([(0, [], 0, 0), (10, [(0, 8), (4, 12), (10, 15)], 15, 0)],
                 [(0, 15)], 10, id="overlapping ranges in one report"),
    pytest.param([(0, [], 0, 0), (10, [(0, 10), (0, 10)], 10, 0)],
                 [(0, 10)], 10, id="the same range twice in one report: once"),
    pytest.param([(0, [], 0, 0), (10, [(0, 10)], 10, 0), (20, [(0, 10)], 0, 0)],
                 [(0, 10)], 20, id="the same range reported again: once"),
    pytest.param([(0, [], 0, 0), (5, [(0, 5)], 5, 0), (10, [(0, 5), (60, 65)], 5, 0)],
                 [(0, 5), (60, 65)], 10, id="seek forward: the gap is not credited"),
    pytest.param([(0, [], 0, 0), (10, [(0, 10)], 10, 0), (15, [(0, 10)], 0, 0), (20, [(0, 10)], 0, 0),
                  (25, [(0, 15)], 5, 0)],
                 [(0, 15)], 25, id="seek back and re-watch: counted once"),
    pytest.param([(0, [], 0, 0), (5, [(50, 60), (0, 10)], 10, 10)],
                 [(0, 10)], 5, id="the allowance is spent from the earliest media time"),
    pytest.param([(0, [], 0, 0), (10, [(0, 5), (40, 60)], 20, 5)],
                 [(0, 5), (40, 55)], 10, id="the allowance splits a range"),
    pytest.param([(0, [], 0, 0), (5, [(5, 5), (7, 6)], 0, 0)],
                 [], 5, id="empty and reversed intervals claim nothing"),
    pytest.param([(0, [], 0, 0), (5, [(0, 5)], 5, 0), (3605, [(0, 600)], 595, 0)],
                 [(0, 600)], 3605, id="a claim after a long pause: allowed by wall time since the last report"),
    pytest.param([(0, [], 0, 0), (10, [(0, 10)], 10, 0), (-10, [(0, 20)], 0, 10), (15, [(0, 20)], 10, 0)],
                 [(0, 20)], 15, id="clock step back: allowance 0, then counted from the latest report"),
])
def test_accept(steps: list[Step], ranges: list[Interval], last: float) -> None:
    ledger = Ledger()
    for at, claimed, added, refused in steps:
        result = accept(ledger, claimed, T + at)
        assert (result.added_seconds, result.refused_seconds) == (added, refused), at
        ledger = result.ledger
    assert ledger.ranges == tuple(ranges)
    assert ledger.last_report_at == T + last
    assert ledger.credited_seconds == iv.length(ranges)


def test_two_tabs_share_one_ledger_and_cannot_exceed_2x_wall_time() -> None:
    # Two tabs, each playing a different part at 2x, report alternately every 5 s, 2.5 s apart.
    ledger = Ledger()
    steps: list[tuple[float, list[Interval], float, float]] = [
        (0.0, [], 0, 0),  # tab A starts
        (2.5, [], 0, 0),  # tab B starts
        (5.0, [(0, 10)], 5, 5),  # A: 2.5 s since B's report
        (7.5, [(100, 110)], 5, 5),  # B
        (10.0, [(0, 20)], 5, 10),  # A resends, its refused time waits
        (12.5, [(100, 120)], 5, 10),  # B
    ]
    for at, claimed, added, refused in steps:
        result = accept(ledger, claimed, T + at)
        assert (result.added_seconds, result.refused_seconds) == (added, refused), at
        ledger = result.ledger
    assert ledger.ranges == ((0, 10), (100, 110))
    assert ledger.credited_seconds == 20 <= MAX_SPEED * 12.5


def test_a_slower_max_speed() -> None:
    first = accept(Ledger(), [], T).ledger
    result = accept(first, [(0, 20)], T + 10, max_speed=1.0)
    assert (result.added_seconds, result.refused_seconds, result.ledger.ranges) == (10, 10, ((0, 10),))


def test_the_ledger_is_not_changed_in_place() -> None:
    ledger = Ledger(((0.0, 10.0),), T)
    result = accept(ledger, [(0, 30)], T + 5)
    assert result == Accepted(Ledger(((0.0, 20.0),), T + 5), 10, 10)
    assert ledger == Ledger(((0.0, 10.0),), T)


reports = st.lists(st.tuples(st.floats(min_value=-100, max_value=1000, allow_nan=False),
                             st.lists(st.tuples(st.integers(0, 600), st.integers(0, 600)), max_size=6)),
                   min_size=1, max_size=20)


@given(reports)
def test_never_more_than_max_speed_times_the_wall_time(steps: list[tuple[float, list[Interval]]]) -> None:
    ledger = Ledger()
    claimed_all: list[Interval] = []
    for at, claimed in steps:
        before = ledger
        result = accept(ledger, claimed, T + at)
        ledger = result.ledger
        claimed_all.extend(claimed)
        assert result.added_seconds >= 0 and result.refused_seconds >= 0
        assert math.isclose(ledger.credited_seconds, before.credited_seconds + result.added_seconds, abs_tol=1e-6)
        assert all(start < end for start, end in ledger.ranges)
        assert list(ledger.ranges) == iv.union(ledger.ranges)
    assert ledger.last_report_at == T + max(at for at, _ in steps)
    first = steps[0][0]
    # The clock stepping back never widens the allowance: the wall time counted is from the first
    # report to the latest, at most.
    assert ledger.credited_seconds <= MAX_SPEED * max(0.0, max(at for at, _ in steps) - first) + 1e-6
    assert iv.length(iv.intersect(ledger.ranges, claimed_all)) == ledger.credited_seconds  # only what was claimed


DURATION = 100.0


@pytest.mark.parametrize(("raw", "code"), [
    pytest.param({"from": 0, "to": 5}, "not_a_list", id="an object"),
    pytest.param("0-5", "not_a_list", id="a string"),
    pytest.param(None, "not_a_list", id="null"),
    pytest.param([[0, 0.1]] * (MAX_RANGES + 1), "too_many", id="too many"),
    pytest.param([[0]], "not_a_pair", id="one number"),
    pytest.param([[0, 1, 2]], "not_a_pair", id="three numbers"),
    pytest.param([5], "not_a_pair", id="a number"),
    pytest.param([{"from": 0, "to": 5}], "not_a_pair", id="an object in the list"),
    pytest.param([["0", 5]], "not_a_number", id="a string number"),
    pytest.param([[0, None]], "not_a_number", id="null end"),
    pytest.param([[True, 5]], "not_a_number", id="bool from"),
    pytest.param([[0, True]], "not_a_number", id="bool to"),
    pytest.param([[math.nan, 5]], "not_finite", id="NaN"),
    pytest.param([[0, math.inf]], "not_finite", id="inf"),
    pytest.param([[-math.inf, 5]], "not_finite", id="-inf"),
    pytest.param([[5, 5]], "empty_or_reversed", id="empty"),
    pytest.param([[6, 5]], "empty_or_reversed", id="reversed"),
    pytest.param([[-1, 5]], "outside_recording", id="before the start"),
    pytest.param([[-0.001, 5]], "outside_recording", id="just before the start"),
    pytest.param([[0, DURATION + EDGE_TOLERANCE + 0.001]], "outside_recording", id="past the tolerance"),
    pytest.param([[200, 300]], "outside_recording", id="after the end"),
    pytest.param([[0, 10**400]], "outside_recording", id="an int too large for a float"),
    pytest.param([[0, 5], [6, 5]], "empty_or_reversed", id="one bad range refuses the report"),
])
def test_parse_ranges_refuses(raw: object, code: str) -> None:
    with pytest.raises(BadRanges) as caught:
        parse_ranges(raw, DURATION)
    assert caught.value.code == code
    assert str(caught.value)  # a human message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(("raw", "expected"), [
    pytest.param([], [], id="empty: starts the clock"),
    pytest.param([[0, 5]], [(0.0, 5.0)], id="ints"),
    pytest.param([[0.5, 5.25]], [(0.5, 5.25)], id="floats"),
    pytest.param([[10, 20], [0, 5], [4, 12]], [(0.0, 20.0)], id="unsorted and overlapping: the union"),
    pytest.param([[0, 5], [5, 10]], [(0.0, 10.0)], id="touching: merged"),
    pytest.param([[90, DURATION]], [(90.0, 100.0)], id="to the very end"),
    pytest.param([[90, DURATION + 0.4]], [(90.0, 100.0)], id="ending in the tolerance: clipped"),
    pytest.param([[90, DURATION + EDGE_TOLERANCE]], [(90.0, 100.0)], id="ending at the tolerance: clipped"),
    pytest.param([[100.2, 100.8]], [], id="wholly in the tolerance: empty once clipped"),
    pytest.param([[0, 0.1]] * MAX_RANGES, [(0.0, 0.1)], id="exactly the most ranges"),
    pytest.param([(0, 5)], [(0.0, 5.0)], id="a tuple pair (from Python callers)"),
])
def test_parse_ranges(raw: object, expected: list[Interval]) -> None:
    got = parse_ranges(raw, DURATION)
    assert got == expected
    assert all(isinstance(v, float) for pair in got for v in pair)


def test_parse_ranges_needs_a_real_duration() -> None:
    with pytest.raises(ValueError):
        parse_ranges([], math.nan)


LIVE_AT = 1_700_000_000.0


@pytest.mark.parametrize(("ranges", "parts", "expected"), [
    pytest.param([(0, 600), (1200, 1800)], [Part(0, 3600, LIVE_AT)],
                 [(LIVE_AT, LIVE_AT + 600), (LIVE_AT + 1200, LIVE_AT + 1800)], id="one part"),
    pytest.param([(3500, 4000)], [Part(0, 3600, LIVE_AT)], [(LIVE_AT + 3500, LIVE_AT + 3600)],
                 id="one part: media past its end dropped"),
    pytest.param([(0, 10), (5, 20)], [Part(0, 3600, LIVE_AT)], [(LIVE_AT, LIVE_AT + 20)], id="a union"),
    # A restart 5 minutes long after 30 minutes: media time goes on, wall time jumps 300 s.
    pytest.param([(1700, 1900)], [Part(0, 1800, LIVE_AT), Part(1800, 1800, LIVE_AT + 2100)],
                 [(LIVE_AT + 1700, LIVE_AT + 1800), (LIVE_AT + 2100, LIVE_AT + 2200)], id="two parts: gap in wall time"),
    pytest.param([(0, 3600)], [Part(1800, 1800, LIVE_AT + 2100), Part(0, 1800, LIVE_AT)],
                 [(LIVE_AT, LIVE_AT + 1800), (LIVE_AT + 2100, LIVE_AT + 3900)], id="two parts in any order"),
    pytest.param([(2000, 2100)], [Part(0, 1800, LIVE_AT), Part(1800, 1800, LIVE_AT + 2100)],
                 [(LIVE_AT + 2300, LIVE_AT + 2400)], id="two parts: in the second"),
    pytest.param([(4000, 5000)], [Part(0, 1800, LIVE_AT), Part(1800, 1800, LIVE_AT + 2100)], [],
                 id="outside every part: dropped"),
    pytest.param([(0, 100)], [], [], id="no parts"),
])
def test_to_session_clock(ranges: list[Interval], parts: list[Part], expected: list[Interval]) -> None:
    assert to_session_clock(ranges, parts) == expected


@pytest.mark.parametrize(("ledger", "text", "back"), [
    pytest.param(Ledger(), "[]", (), id="empty"),
    pytest.param(Ledger(((0.0, 5.5), (10.0, 20.1234567))), "[[0,5.5],[10,20.123]]", ((0.0, 5.5), (10.0, 20.123)),
                 id="compact, 3 decimals"),
    pytest.param(Ledger(((1.0001, 1.0004), (2.0, 3.0))), "[[2,3]]", ((2.0, 3.0),), id="empty once rounded: dropped"),
])
def test_json_round_trip(ledger: Ledger, text: str, back: tuple[Interval, ...]) -> None:
    assert ledger_to_json(ledger) == text
    loaded = ledger_from_json(text)
    assert loaded == Ledger(back, None)
    assert all(isinstance(v, float) for pair in loaded.ranges for v in pair)
    assert ledger_from_json(text, last_report_at=T) == Ledger(back, T)


@pytest.mark.parametrize("text", [None, "", "  "])
def test_json_empty_text_is_an_empty_ledger(text: str | None) -> None:
    assert ledger_from_json(text) == Ledger()


@pytest.mark.parametrize("text", [
    "[[0,", "{}", '{"ranges": []}', "[[0]]", "[5]", '[["a","b"]]', "[[5,1]]", "[[1,1]]", "[[-1,2]]",
    "[[0,NaN]]", "[[0,Infinity]]", "[[true,2]]", "[[0,1e400]]", "[[0," + "9" * 400 + "]]", "null",
])
def test_json_corrupted_raises(text: str) -> None:
    with pytest.raises(ValueError):
        ledger_from_json(text)
