"""The credit rule as a table of cases, and what it must never do."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.attendance.rule import CreditRule, Status, credit

RULE = CreditRule()  # 80 %, late after 5 min, early before 5 min
LIVE = (0.0, 3600.0)


@pytest.mark.parametrize(("present", "replay", "expected"), [
    # present intervals           replay  live  credited status       late early
    ([], 0, (0, 0, "absent", 0, 0)),
    ([(0, 3600)], 0, (3600, 3600, "attended", 0, 0)),
    ([(0, 2880)], 0, (2880, 2880, "attended", 0, 12)),  # exactly 80 %: attended; left 12 min early
    ([(0, 2879)], 0, (2879, 2879, "partial", 0, 12)),  # a second less: partial
    ([(1, 2)], 0, (1, 1, "partial", 0, 59)),  # any time at all is partial
    ([(300, 3600)], 0, (3300, 3300, "attended", 0, 0)),  # 5 min late: within the tolerance
    ([(301, 3600)], 0, (3299, 3299, "attended", 5, 0)),  # past it: flagged, whole minutes
    ([(0, 3299)], 0, (3299, 3299, "attended", 0, 5)),  # left 5 min 1 s early
    ([(0, 3300)], 0, (3300, 3300, "attended", 0, 0)),  # left exactly 5 min early: within it
    ([(-900, 4000)], 0, (3600, 3600, "attended", 0, 0)),  # before the start and after the end: clipped
    ([(0, 1800), (900, 2700)], 0, (2700, 2700, "partial", 0, 15)),  # overlap counted once
    ([(5000, 6000)], 0, (0, 0, "absent", 0, 0)),  # only after the end
    ([(0, 1800)], 1800, (1800, 3600, "attended", 0, 30)),  # replay adds
    ([(0, 3600)], 900, (3600, 3600, "attended", 0, 0)),  # capped at the live duration
    ([], 600, (0, 600, "partial", 0, 0)),  # replay alone
])
def test_credit(present: list[tuple[float, float]], replay: int, expected: tuple[int, int, str, int, int]) -> None:
    result = credit(RULE, LIVE, present, replay)
    assert (result.live_seconds, result.credited_seconds, result.status.value, result.late_minutes,
            result.early_minutes) == expected
    assert result.replay_seconds == replay


@pytest.mark.parametrize("live", [None, (100.0, 100.0), (100.0, 50.0)])
def test_a_session_that_never_went_live_credits_nobody(live: tuple[float, float] | None) -> None:
    assert credit(RULE, live, [(0, 1000)], 500).status is Status.ABSENT


@pytest.mark.parametrize(("percent", "credited", "status"), [
    (50, 1800, "attended"), (50, 1799, "partial"), (100, 3599, "partial"), (100, 3600, "attended"),
])
def test_the_threshold_is_configurable(percent: int, credited: int, status: str) -> None:
    assert CreditRule(attended_percent=percent).status(credited, 3600).value == status


times = st.floats(min_value=-5000, max_value=10_000, allow_nan=False)


@given(st.lists(st.tuples(times, times), max_size=20), st.integers(min_value=0, max_value=20_000),
       st.floats(min_value=0, max_value=5000), st.floats(min_value=1, max_value=10_000))
def test_credited_never_exceeds_the_live_duration(present: list[tuple[float, float]], replay: int,
                                                  start: float, duration: float) -> None:
    result = credit(RULE, (start, start + duration), present, replay)
    assert 0 <= result.live_seconds <= result.credited_seconds <= duration
    assert (result.status is Status.ABSENT) == (result.credited_seconds == 0)
    assert result.late_minutes * 60 <= duration and result.early_minutes * 60 <= duration
