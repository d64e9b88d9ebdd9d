"""One endpoint's link, measured on the server's side from what aiortc already counts.

Nothing is sent for it and nothing per packet is added: a viewer's RTCP
receiver reports (the program's loss and jitter as the hall receives it),
aiortc's round-trip estimate from those reports, the DTLS transport's byte
counters, and for a publisher our own receiver's sequence and jitter
counters. :meth:`LinkMeter.read` turns them into a
:class:`~server.live.quality.LinkReading` about once a second; its cost is
a few attribute reads per endpoint (measured in ``bench/quality_cost.py``).

Loss is read from the reports' running totals over the last
``WINDOW`` seconds, not from one report's fraction (browsers report every
30 ms to 1 s, and a fraction is only since the previous report).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender

from server.live.quality import LinkReading
from server.media import hooks

WINDOW = 5.0

# Where a clock rate is unknown (no packet yet): video's.
_VIDEO_RATE = 90000


class LinkMeter:
    """Figures of one peer connection: ``view`` (we send the program) or ``publish`` (we receive)."""

    def __init__(self, pc: RTCPeerConnection, kind: Literal["view", "publish"], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pc = pc
        self.kind = kind
        self._clock = clock
        self._senders: list[tuple[RTCRtpSender, int]] = []  # (sender, its clock rate)
        self._receivers: list[RTCRtpReceiver] = []
        # Per sender SSRC: (mono, cumulative lost, extended highest sequence, jitter in RTP units).
        self._reports: dict[int, deque[tuple[float, int, int, int]]] = {}
        self._last_report: float | None = None
        # Our own receiver's counters, per receiver: (mono, expected, received).
        self._received: dict[int, deque[tuple[float, int, int]]] = {}
        self._bytes: tuple[float, int, int] | None = None  # (mono, received, sent)
        self._started = clock()

    # what the senders' viewers report ------------------------------------------------------

    def watch_sender(self, sender: RTCRtpSender, clock_rate: int) -> hooks.ReceiverReports:
        """Follow what the remote side reports about ``sender``'s stream (give the result to
        :func:`hooks.on_receiver_report`)."""
        self._senders.append((sender, clock_rate))
        meter = self

        class _Listener:
            def report(self, report: hooks.ReceiverReport) -> None:
                meter._report(sender._ssrc, report)

            def bandwidth(self, bits_per_second: int, octets_sent: int) -> None:
                pass

        return _Listener()

    def watch_receiver(self, receiver: RTCRtpReceiver) -> None:
        self._receivers.append(receiver)

    def _report(self, ssrc: int, report: hooks.ReceiverReport) -> None:
        now = self._clock()
        self._last_report = now
        marks = self._reports.setdefault(ssrc, deque())
        marks.append((now, report.packets_lost, report.highest_sequence, report.jitter))
        while len(marks) > 2 and marks[1][0] <= now - WINDOW:
            marks.popleft()

    # the reading ---------------------------------------------------------------------------

    def read(self) -> LinkReading:
        now = self._clock()
        bitrate_in, bitrate_out = self._bitrates(now)
        if self.kind == "view":
            loss, jitter = self._remote_loss_and_jitter()
            rtts = [rtt for rtt in (hooks.round_trip(sender) for sender, _ in self._senders) if rtt is not None]
            return LinkReading(
                "view", rtt_ms=max(rtts) * 1000 if rtts else None, loss_pct=loss, jitter_ms=jitter,
                bitrate_in_kbps=bitrate_in, bitrate_out_kbps=bitrate_out,
                report_age=now - (self._last_report if self._last_report is not None else self._started))
        loss, jitter = self._own_loss_and_jitter(now)
        return LinkReading("publish", loss_pct=loss, jitter_ms=jitter, bitrate_in_kbps=bitrate_in,
                           bitrate_out_kbps=bitrate_out)

    def _bitrates(self, now: float) -> tuple[float | None, float | None]:
        _, sent, _, received = hooks.transport_counts(self.pc)
        previous, self._bytes = self._bytes, (now, received, sent)
        if previous is None or now <= previous[0]:
            return None, None
        span = now - previous[0]
        return (received - previous[1]) * 8 / span / 1000, (sent - previous[2]) * 8 / span / 1000

    def _remote_loss_and_jitter(self) -> tuple[float | None, float | None]:
        losses: list[float] = []
        jitters: list[float] = []
        rates = {sender._ssrc: rate for sender, rate in self._senders}
        for ssrc, marks in self._reports.items():
            first, last = marks[0], marks[-1]
            expected = last[2] - first[2]
            if expected > 0:
                losses.append(max(0.0, min(100.0, (last[1] - first[1]) * 100 / expected)))
            jitters.append(last[3] * 1000 / rates.get(ssrc, _VIDEO_RATE))
        return (max(losses) if losses else None), (max(jitters) if jitters else None)

    def _own_loss_and_jitter(self, now: float) -> tuple[float | None, float | None]:
        losses: list[float] = []
        jitters: list[float] = []
        for receiver in self._receivers:
            counters = hooks.receive_counters(receiver)
            if counters is None:
                continue
            expected, received, jitter, rate = counters
            marks = self._received.setdefault(id(receiver), deque())
            marks.append((now, expected, received))
            while len(marks) > 2 and marks[1][0] <= now - WINDOW:
                marks.popleft()
            first, last = marks[0], marks[-1]
            span = last[1] - first[1]
            if span > 0:
                losses.append(max(0.0, min(100.0, (span - (last[2] - first[2])) * 100 / span)))
            jitters.append(jitter * 1000 / rate)
        return (max(losses) if losses else None), (max(jitters) if jitters else None)
