"""How well each bridge point's link carries the lecture: figures, a grade, a short history, alarms.

Pure Python. The media layer measures each endpoint on the server's side
(the RTCP reports it already receives: round trip, loss, jitter; the bytes
it sends and receives), so a page cannot fake them; a hall's page adds what
its browser decodes (``getStats``: frames, freezes, audio level) over the
websocket. :class:`QualityBoard` turns them into a grade by thresholds
(:class:`Thresholds`, configurable), keeps the last minutes of every point
for the board's sparklines, counts reconnects, and says when a point needs
the operator: it dropped, or it stayed red, once per episode, never again
until it has recovered.

Time: ``mono`` is a monotonic clock (history, ages), ``now`` wall time (what
the board prints); both are passed in, so tests move them by hand.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from server.live.events import PointId

Grade = Literal["green", "amber", "red", "absent"]
AlarmKind = Literal["dropped", "red", "recovered"]

# Which points need attention first on the board.
ATTENTION: dict[Grade, int] = {"red": 0, "absent": 1, "amber": 2, "green": 3}
_LEVEL: dict[Grade, int] = {"green": 0, "amber": 1, "red": 2, "absent": 3}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where a figure turns a point amber, and red (``[quality]`` in the settings)."""

    rtt_amber_ms: float = 250.0
    rtt_red_ms: float = 600.0
    loss_amber_pct: float = 2.0
    loss_red_pct: float = 8.0
    jitter_amber_ms: float = 30.0
    jitter_red_ms: float = 100.0
    # Freezes the hall's browser counted in the last minute.
    freezes_amber: float = 1.0
    freezes_red: float = 4.0
    # A connected point whose viewer sent no RTCP report for this long is red: its figures are stale.
    silent_seconds: float = 10.0
    # Consecutive red evaluations before a point's "red" alarm is raised (a blip is not an alarm).
    red_after: int = 2
    # Consecutive evaluations out of red (connected) before an alarm is over: a flapping link
    # raises one alarm, not one per flap.
    calm_after: int = 5

    def __post_init__(self) -> None:
        pairs = [(self.rtt_amber_ms, self.rtt_red_ms), (self.loss_amber_pct, self.loss_red_pct),
                 (self.jitter_amber_ms, self.jitter_red_ms), (self.freezes_amber, self.freezes_red)]
        if any(not 0 <= amber <= red for amber, red in pairs):
            raise ValueError("each amber threshold must be at least 0 and at most its red one")
        if self.silent_seconds <= 0 or self.red_after < 1 or self.calm_after < 1:
            raise ValueError("silent_seconds must be positive, red_after and calm_after at least 1")


@dataclass(frozen=True, slots=True)
class LinkReading:
    """One endpoint of a point as the media layer measured it (None: not known yet).

    A ``view`` endpoint carries the program to the hall: its round trip,
    loss and jitter are what the hall's receiver reports about our stream.
    A ``publish`` endpoint carries the hall's camera to us: its loss and
    jitter are what our receiver counts.
    """

    kind: Literal["view", "publish"]
    rtt_ms: float | None = None
    loss_pct: float | None = None
    jitter_ms: float | None = None
    bitrate_in_kbps: float | None = None
    bitrate_out_kbps: float | None = None
    # Seconds since the remote side last sent an RTCP report (None: never yet).
    report_age: float | None = None


@dataclass(frozen=True, slots=True)
class PageReport:
    """What a hall's page reports from its browser's ``getStats`` (running totals)."""

    frames_decoded: int
    freezes: int
    fps: float | None = None
    audio_level: float | None = None  # 0..1


@dataclass(frozen=True, slots=True)
class Figures:
    """A point's link, all endpoints together: the worst of each figure, the sum of the bitrates."""

    rtt_ms: float | None = None
    loss_pct: float | None = None
    jitter_ms: float | None = None
    bitrate_in_kbps: float | None = None
    bitrate_out_kbps: float | None = None
    report_age: float | None = None
    fps: float | None = None
    frames_decoded: int | None = None
    freezes_per_min: float | None = None
    audio_level: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        return {name: _round(getattr(self, name)) for name in self.__slots__}  # type: ignore[attr-defined]


def _round(value: float | int | None) -> float | int | None:
    if value is None or isinstance(value, int):
        return value
    return round(value, 1)


def _worst(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _total(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def combine(readings: Iterable[LinkReading]) -> Figures:
    """The figures of a point from its endpoints' readings (server side only)."""
    readings = list(readings)
    views = [r for r in readings if r.kind == "view"]
    return Figures(
        rtt_ms=_worst(r.rtt_ms for r in readings),
        loss_pct=_worst(r.loss_pct for r in readings),
        jitter_ms=_worst(r.jitter_ms for r in readings),
        bitrate_in_kbps=_total(r.bitrate_in_kbps for r in readings),
        bitrate_out_kbps=_total(r.bitrate_out_kbps for r in readings),
        # Silence matters where the program goes out; a publisher's reports are our own receiver's.
        report_age=_worst(r.report_age for r in views),
    )


def grade(figures: Figures, thresholds: Thresholds, *, connected: bool,
          receiving: bool = True) -> tuple[Grade, tuple[str, ...]]:
    """The point's grade and why: the figures at or past their amber or red threshold, worst first.

    Reasons are stable codes (``rtt``, ``loss``, ``jitter``, ``freezes``,
    ``silent``, ``no_media``); the pages phrase them.
    """
    if not connected:
        return "absent", ()
    t = thresholds
    checks = [
        ("loss", figures.loss_pct, t.loss_amber_pct, t.loss_red_pct),
        ("rtt", figures.rtt_ms, t.rtt_amber_ms, t.rtt_red_ms),
        ("jitter", figures.jitter_ms, t.jitter_amber_ms, t.jitter_red_ms),
        ("freezes", figures.freezes_per_min, t.freezes_amber, t.freezes_red),
    ]
    red: list[str] = []
    amber: list[str] = []
    for code, value, amber_at, red_at in checks:
        if value is None:
            continue
        if value >= red_at:
            red.append(code)
        elif value >= amber_at:
            amber.append(code)
    if not receiving:
        red.append("no_media")
    elif figures.report_age is not None and figures.report_age >= t.silent_seconds:
        red.append("silent")
    if red:
        return "red", tuple(red + amber)
    if amber:
        return "amber", tuple(amber)
    return "green", ()


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of a sparkline: the point's state every ``sample_seconds``."""

    at: datetime
    grade: Grade
    rtt_ms: float | None
    loss_pct: float | None
    bitrate_out_kbps: float | None

    def to_list(self) -> list[object]:
        """Compact for the wire: [time, grade, rtt, loss, kbps out]."""
        return [self.at.isoformat(timespec="seconds"), self.grade, _round(self.rtt_ms), _round(self.loss_pct),
                _round(self.bitrate_out_kbps)]


@dataclass(frozen=True, slots=True)
class Alarm:
    """A point needs the operator (``dropped``, ``red``), or no longer does (``recovered``)."""

    point_id: PointId
    kind: AlarmKind
    reasons: tuple[str, ...]
    figures: Figures


@dataclass(slots=True)
class PointQuality:
    """Everything the board knows of one point's link."""

    point_id: PointId
    grade: Grade = "absent"
    reasons: tuple[str, ...] = ()
    figures: Figures = field(default_factory=Figures)
    connected: bool = False
    ever_connected: bool = False
    reconnects: int = 0
    last_seen: datetime | None = None
    history: deque[Sample] = field(default_factory=deque)
    # The alarm raised and not yet recovered from ("dropped" or "red"), if any.
    alarm: AlarmKind | None = None
    red_streak: int = 0
    calm_streak: int = 0
    page: PageReport | None = None
    page_at: float | None = None
    # The page's freeze counts over the last minute: (mono, total freezes).
    freeze_marks: deque[tuple[float, int]] = field(default_factory=deque)
    last_sample: float | None = None
    # Samples taken since the start (the history keeps the latest): who sent which tells by it.
    samples_taken: int = 0


class QualityBoard:
    """The quality of every point of one session, evaluated by :meth:`observe` about once a second."""

    # A page report older than this is not shown (the page stopped reporting: its figures are stale).
    PAGE_STALE_SECONDS = 15.0

    def __init__(self, thresholds: Thresholds | None = None, *, history_seconds: float = 600.0,
                 sample_seconds: float = 5.0) -> None:
        if history_seconds <= 0 or sample_seconds <= 0:
            raise ValueError("history_seconds and sample_seconds must be positive")
        self.thresholds = thresholds or Thresholds()
        self.sample_seconds = sample_seconds
        self._history_len = max(1, int(history_seconds / sample_seconds))
        self._points: dict[PointId, PointQuality] = {}

    def point(self, point_id: PointId) -> PointQuality:
        found = self._points.get(point_id)
        if found is None:
            found = self._points[point_id] = PointQuality(point_id, history=deque(maxlen=self._history_len))
        return found

    def get(self, point_id: PointId) -> PointQuality | None:
        return self._points.get(point_id)

    def forget(self, keep: Iterable[PointId]) -> None:
        """Drop the points no longer invited."""
        wanted = set(keep)
        for point_id in [p for p in self._points if p not in wanted]:
            del self._points[point_id]

    def page_report(self, point_id: PointId, report: PageReport, mono: float) -> None:
        """Take what a hall's page measured (its running totals; a reload restarts them)."""
        point = self.point(point_id)
        marks = point.freeze_marks
        if marks and report.freezes < marks[-1][1]:
            marks.clear()  # a new page: its counters started again
        marks.append((mono, report.freezes))
        while len(marks) > 1 and marks[0][0] < mono - 60.0:
            marks.popleft()
        point.page, point.page_at = report, mono

    def observe(self, point_id: PointId, readings: Iterable[LinkReading], *, connected: bool, now: datetime,
                mono: float, live: bool, receiving: bool = True) -> Alarm | None:
        """Evaluate one point: its grade, its history, and the alarm it raises or clears (only while ``live``).

        ``receiving``: the program reaches the point's viewer (False: red, ``no_media``).
        """
        point = self.point(point_id)
        figures = combine(readings) if connected else Figures()
        if not live:
            # Before the session nothing is sent, so nothing is reported back: silence is not a fault then.
            figures = replace(figures, report_age=None)
        page = point.page if connected and point.page_at is not None \
            and mono - point.page_at <= self.PAGE_STALE_SECONDS else None
        if page is not None:
            first_mono, first_freezes = point.freeze_marks[0]
            span = max(mono - first_mono, 1.0)
            freezes = (page.freezes - first_freezes) * 60.0 / span if len(point.freeze_marks) > 1 else 0.0
            figures = replace(figures, fps=page.fps, frames_decoded=page.frames_decoded,
                              freezes_per_min=freezes, audio_level=page.audio_level)
        was_connected = point.connected
        point.figures = figures
        point.grade, point.reasons = grade(figures, self.thresholds, connected=connected, receiving=receiving)
        point.connected = connected
        if connected:
            point.last_seen = now
            if not was_connected and point.ever_connected:
                point.reconnects += 1
            point.ever_connected = True
        if point.last_sample is None or mono - point.last_sample >= self.sample_seconds:
            point.last_sample = mono
            point.samples_taken += 1
            point.history.append(Sample(now, point.grade, figures.rtt_ms, figures.loss_pct,
                                        figures.bitrate_out_kbps))
        return self._alarm(point, was_connected, live)

    def _alarm(self, point: PointQuality, was_connected: bool, live: bool) -> Alarm | None:
        point.red_streak = point.red_streak + 1 if point.grade == "red" else 0
        point.calm_streak = point.calm_streak + 1 if point.grade in ("green", "amber") else 0
        if not live:
            point.alarm = None
            return None
        if was_connected and not point.connected and point.alarm != "dropped":
            point.alarm = "dropped"
        elif point.grade == "red" and point.red_streak >= self.thresholds.red_after and point.alarm != "red":
            # Red, or back from a drop but struggling: the alarm says the new cause.
            point.alarm = "red"
        elif point.alarm is not None and point.calm_streak >= self.thresholds.calm_after:
            point.alarm = None
            return Alarm(point.point_id, "recovered", point.reasons, point.figures)
        else:
            return None
        return Alarm(point.point_id, point.alarm, point.reasons, point.figures)


def attention(point: PointQuality) -> tuple[int, int]:
    """Sort key: points with an open alarm first, then red, absent, amber, green."""
    return (0 if point.alarm is not None else 1, ATTENTION[point.grade])
