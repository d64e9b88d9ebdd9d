"""Lines an outsider can cause are throttled (issue 12, item 7: log flooding)."""

import logging

import pytest

from server.logs import Throttled


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_writes_a_few_lines_then_says_how_many_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    throttled = Throttled(logging.getLogger("flood"), interval=60, burst=3, clock=clock)
    with caplog.at_level(logging.INFO, logger="flood"):
        written = [throttled.warning("refused", "refused %s", n) for n in range(1000)]
        assert written.count(True) == 3 and len(caplog.records) == 3
        # Another key has its own allowance.
        assert throttled.warning("slow", "slow socket")
        clock.now = 61
        throttled.warning("refused", "refused again")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:3] == ["refused 0", "refused 1", "refused 2"]
    assert messages[-2:] == ["997 more like the last 'refused' line were left out in 61 s", "refused again"]


def test_keys_are_bounded() -> None:
    throttled = Throttled(logging.getLogger("flood"), max_keys=10, clock=Clock())
    for n in range(1000):
        throttled.info(("user", n), "line")
    assert len(throttled._windows) <= 10
