"""The credit rule as a table of cases, and what it must never do."""

from __future__ import annotations

import pytest
from _pytest.mark import ParameterSet
from hypothesis import given
from hypothesis import strategies as st

from server.attendance import intervals as iv
from server.attendance.intervals import Interval
from server.attendance.rule import CreditRule, Status, credit

RULE = CreditRule()  # 80 %, late after 5 min, early before 5 min
LIVE = (0.0, 3600.0)


def case(present: list[Interval], replay: list[Interval], expected: tuple[int, int, int, str, int, int],
         id: str) -> ParameterSet:  # noqa: A002 (pytest's name)
    return pytest.param(present, replay, expected, id=id)


@pytest.mark.parametrize(("present", "replay", "expected"), [
    #    present intervals  replay (session clock)  live  replay credited status  late early
    case([], [], (0, 0, 0, "absent", 0, 0), "nothing"),
    case([(0, 3600)], [], (3600, 0, 3600, "attended", 0, 0), "the whole session live"),
    case([(0, 2880)], [], (2880, 0, 2880, "attended", 0, 12), "exactly 80 %: attended; left 12 min early"),
    case([(0, 2879)], [], (2879, 0, 2879, "partial", 0, 12), "a second less: partial"),
    case([(1, 2)], [], (1, 0, 1, "partial", 0, 59), "any time at all is partial"),
    case([(300, 3600)], [], (3300, 0, 3300, "attended", 0, 0), "5 min late: within the tolerance"),
    case([(301, 3600)], [], (3299, 0, 3299, "attended", 5, 0), "past it: flagged, whole minutes"),
    case([(0, 3299)], [], (3299, 0, 3299, "attended", 0, 5), "left 5 min 1 s early"),
    case([(0, 3300)], [], (3300, 0, 3300, "attended", 0, 0), "left exactly 5 min early: within it"),
    case([(-900, 4000)], [], (3600, 0, 3600, "attended", 0, 0), "before the start and after the end: clipped"),
    case([(0, 1800), (900, 2700)], [], (2700, 0, 2700, "partial", 0, 15), "overlap counted once"),
    case([(5000, 6000)], [], (0, 0, 0, "absent", 0, 0), "only after the end"),
    # Replay: the union with live presence, within the live interval; late/early from live presence only.
    case([(0, 1800)], [(1800, 3600)], (1800, 1800, 3600, "attended", 0, 30),
         "first half live, second half in replay: the whole"),
    case([(0, 3600)], [(0, 900)], (3600, 900, 3600, "attended", 0, 0), "replay of what was watched live adds nothing"),
    case([(0, 1800)], [(0, 1800)], (1800, 1800, 1800, "partial", 0, 30), "same span live and in replay: once"),
    case([(0, 2000)], [(1500, 3000)], (2000, 1500, 3000, "attended", 0, 26), "overlapping live and replay"),
    case([], [(0, 600)], (0, 600, 600, "partial", 0, 0), "replay alone: no late or early flags"),
    case([], [(0, 3600)], (0, 3600, 3600, "attended", 0, 0), "the whole session in replay"),
    case([], [(0, 600), (300, 900)], (0, 900, 900, "partial", 0, 0), "overlapping replay counted once"),
    case([], [(-600, 600), (3000, 4200)], (0, 1200, 1200, "partial", 0, 0), "replay outside the live interval: clipped"),
    case([], [(4000, 5000)], (0, 0, 0, "absent", 0, 0), "replay only outside the live interval"),
    case([(1200, 1800)], [(0, 1200), (1800, 2400)], (600, 1800, 2400, "partial", 20, 30),
         "late and early from live presence, even when replay covers them"),
])
def test_credit(present: list[Interval], replay: list[Interval], expected: tuple[int, int, int, str, int, int]) -> None:
    result = credit(RULE, LIVE, present, replay)
    assert (result.live_seconds, result.replay_seconds, result.credited_seconds, result.status.value,
            result.late_minutes, result.early_minutes) == expected


def test_replay_may_be_any_iterable_and_defaults_to_none() -> None:
    assert credit(RULE, LIVE, [(0, 1800)], iter([(1800, 3600)])).credited_seconds == 3600
    assert credit(RULE, LIVE, [(0, 1800)]).replay_seconds == 0


@pytest.mark.parametrize("live", [None, (100.0, 100.0), (100.0, 50.0)])
def test_a_session_that_never_went_live_credits_nobody(live: tuple[float, float] | None) -> None:
    result = credit(RULE, live, [(0, 1000)], [(0, 500)])
    assert result.status is Status.ABSENT
    assert (result.live_seconds, result.replay_seconds, result.credited_seconds) == (0, 0, 0)


@pytest.mark.parametrize(("percent", "credited", "status"), [
    (50, 1800, "attended"), (50, 1799, "partial"), (100, 3599, "partial"), (100, 3600, "attended"),
])
def test_the_threshold_is_configurable(percent: int, credited: int, status: str) -> None:
    assert CreditRule(attended_percent=percent).status(credited, 3600).value == status


times = st.floats(min_value=-5000, max_value=10_000, allow_nan=False)


@given(st.lists(st.tuples(times, times), max_size=20), st.lists(st.tuples(times, times), max_size=20),
       st.floats(min_value=0, max_value=5000), st.floats(min_value=1, max_value=10_000))
def test_credited_never_exceeds_the_live_duration(present: list[Interval], replay: list[Interval],
                                                  start: float, duration: float) -> None:
    result = credit(RULE, (start, start + duration), present, replay)
    assert 0 <= result.live_seconds <= result.credited_seconds <= duration
    assert 0 <= result.replay_seconds <= result.credited_seconds
    assert result.credited_seconds <= result.live_seconds + result.replay_seconds + 1  # each floored on its own
    assert (result.status is Status.ABSENT) == (result.credited_seconds == 0)
    assert result.late_minutes * 60 <= duration and result.early_minutes * 60 <= duration
    if not iv.clip(present, start, start + duration):
        assert result.late_minutes == result.early_minutes == 0  # flags come from live presence only
