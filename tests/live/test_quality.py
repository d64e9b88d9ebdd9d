"""The quality board's rules (server/live/quality.py): grades, history, alarms once per episode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.live.quality import (
    Figures,
    LinkReading,
    PageReport,
    QualityBoard,
    Thresholds,
    combine,
    grade,
)

T = Thresholds()
START = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)


def view(**figures: float | None) -> LinkReading:
    return LinkReading("view", **{"report_age": 1.0, **figures})  # type: ignore[arg-type]


class Board:
    """A board and a clock moved by hand, one evaluation a second."""

    def __init__(self, thresholds: Thresholds = T, **options: float) -> None:
        self.board = QualityBoard(thresholds, **options)
        self.mono = 100.0

    def observe(self, *readings: LinkReading, connected: bool = True, live: bool = True, point: int = 7,
                receiving: bool = True):  # noqa: ANN201
        self.mono += 1.0
        return self.board.observe(point, readings, connected=connected, live=live, receiving=receiving,
                                  now=START + timedelta(seconds=self.mono), mono=self.mono)


@pytest.mark.parametrize(("figures", "expected"), [
    (dict(rtt_ms=40, loss_pct=0.0, jitter_ms=5), ("green", ())),
    (dict(rtt_ms=T.rtt_amber_ms - 0.1), ("green", ())),
    (dict(rtt_ms=T.rtt_amber_ms), ("amber", ("rtt",))),
    (dict(rtt_ms=T.rtt_red_ms), ("red", ("rtt",))),
    (dict(loss_pct=T.loss_amber_pct), ("amber", ("loss",))),
    (dict(loss_pct=T.loss_red_pct, rtt_ms=T.rtt_amber_ms), ("red", ("loss", "rtt"))),
    (dict(jitter_ms=T.jitter_red_ms), ("red", ("jitter",))),
    (dict(freezes_per_min=T.freezes_amber), ("amber", ("freezes",))),
    (dict(report_age=T.silent_seconds), ("red", ("silent",))),
    ({}, ("green", ())),
])
def test_grades_at_the_thresholds(figures: dict[str, float], expected: tuple[str, tuple[str, ...]]) -> None:
    assert grade(Figures(**figures), T, connected=True) == expected


def test_a_point_not_connected_is_absent_and_one_receiving_nothing_is_red() -> None:
    assert grade(Figures(rtt_ms=900), T, connected=False) == ("absent", ())
    assert grade(Figures(), T, connected=True, receiving=False) == ("red", ("no_media",))


def test_the_figures_of_a_point_are_its_worst_and_its_total() -> None:
    figures = combine([view(rtt_ms=30, loss_pct=1.0, jitter_ms=4, bitrate_out_kbps=900, report_age=2),
                       LinkReading("publish", loss_pct=6.0, jitter_ms=9, bitrate_in_kbps=700),
                       view(rtt_ms=80, loss_pct=0.5, bitrate_out_kbps=100, report_age=0.5)])
    assert (figures.rtt_ms, figures.loss_pct, figures.jitter_ms) == (80, 6.0, 9)
    assert (figures.bitrate_out_kbps, figures.bitrate_in_kbps, figures.report_age) == (1000, 700, 2)


def test_thresholds_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError):
        Thresholds(loss_amber_pct=10, loss_red_pct=5)
    with pytest.raises(ValueError):
        Thresholds(red_after=0)


def test_red_raises_one_alarm_after_red_after_seconds_and_recovers_after_calm_after() -> None:
    b = Board()
    assert b.observe(view(rtt_ms=30)) is None
    assert b.observe(view(loss_pct=20)) is None  # one red second is a blip
    alarm = b.observe(view(loss_pct=20))
    assert alarm is not None and alarm.kind == "red" and alarm.reasons == ("loss",)
    assert alarm.figures.loss_pct == 20
    for _ in range(10):
        assert b.observe(view(loss_pct=20)) is None, "a red point alarms once, not every second"
    for _ in range(T.calm_after - 1):
        assert b.observe(view(loss_pct=0)) is None
    recovered = b.observe(view(loss_pct=0))
    assert recovered is not None and recovered.kind == "recovered"
    assert b.board.get(7).alarm is None  # type: ignore[union-attr]


def test_a_flapping_link_raises_one_alarm() -> None:
    b = Board()
    kinds = []
    for second in range(40):
        bad = second % 6 < 3  # three seconds red, three green, over and over
        alarm = b.observe(view(loss_pct=20 if bad else 0))
        if alarm:
            kinds.append(alarm.kind)
    assert kinds == ["red"], kinds


def test_a_drop_alarms_at_once_even_while_red_and_a_return_recovers() -> None:
    b = Board()
    b.observe(view(loss_pct=20))
    assert b.observe(view(loss_pct=20)).kind == "red"  # type: ignore[union-attr]
    dropped = b.observe(connected=False)
    assert dropped is not None and dropped.kind == "dropped"
    assert b.observe(connected=False) is None
    alarms = [b.observe(view(rtt_ms=20)) for _ in range(T.calm_after)]
    assert [a.kind for a in alarms if a] == ["recovered"]
    point = b.board.get(7)
    assert point is not None and point.reconnects == 1


def test_no_alarm_before_the_session_is_live() -> None:
    b = Board()
    assert [b.observe(view(loss_pct=50), live=False) for _ in range(5)] == [None] * 5
    # Nothing is sent before the session, so nothing comes back: a silent viewer is not red then.
    b.observe(view(report_age=60.0), live=False)
    assert b.board.get(7).grade == "green"  # type: ignore[union-attr]
    b.observe(view(report_age=60.0), live=True)
    assert b.board.get(7).grade == "red"  # type: ignore[union-attr]
    assert b.observe(connected=False, live=False) is None
    point = b.board.get(7)
    assert point is not None and point.grade == "absent" and point.alarm is None


def test_history_takes_one_sample_per_period_and_keeps_the_last_minutes() -> None:
    b = Board(history_seconds=60, sample_seconds=5)
    for second in range(200):
        b.observe(view(rtt_ms=second, bitrate_out_kbps=1000))
    point = b.board.get(7)
    assert point is not None
    assert len(point.history) == 12 and point.samples_taken == 40
    assert point.history[-1].rtt_ms == 195 and point.history[0].rtt_ms == 140
    assert point.history[-1].to_list()[1:] == ["green", 195, None, 1000]


def test_freezes_are_counted_per_minute_from_the_pages_running_totals() -> None:
    b = Board()
    board = b.board
    for second in range(60):
        board.page_report(7, PageReport(frames_decoded=30 * second, freezes=second // 10, fps=30), b.mono)
        b.observe(view(rtt_ms=20))
    point = board.get(7)
    assert point is not None
    assert point.figures.fps == 30 and point.figures.frames_decoded == 30 * 59
    assert 4.5 <= point.figures.freezes_per_min <= 5.5  # type: ignore[operator]
    assert point.grade == "red" and "freezes" in point.reasons
    # A reloaded page starts its counters again: no negative freezes, no stale rate.
    board.page_report(7, PageReport(frames_decoded=10, freezes=0, fps=30), b.mono)
    b.observe(view(rtt_ms=20))
    assert point.figures.freezes_per_min == 0.0 and point.grade == "green"


def test_a_page_that_stopped_reporting_is_not_shown() -> None:
    b = Board()
    b.board.page_report(7, PageReport(frames_decoded=100, freezes=0, fps=25), b.mono)
    b.observe(view())
    assert b.board.get(7).figures.fps == 25  # type: ignore[union-attr]
    for _ in range(int(QualityBoard.PAGE_STALE_SECONDS) + 1):
        b.observe(view())
    assert b.board.get(7).figures.fps is None  # type: ignore[union-attr]


def test_points_no_longer_invited_are_forgotten() -> None:
    b = Board()
    b.observe(view(), point=1)
    b.observe(view(), point=2)
    b.board.forget([2])
    assert b.board.get(1) is None and b.board.get(2) is not None
