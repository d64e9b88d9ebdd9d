"""Process-wide media counters, for ``/metrics``: plain numbers bumped where things happen.

One instance per application (``keys.MEDIA_STATS``), handed to every
:class:`~server.media.room.MediaRoom`. Nothing here is per packet: the
byte and packet counts of open endpoints are read from aiortc's own
counters when scraped, and an endpoint that closes adds its final counts
here, so the totals never go backwards (Prometheus counters must not).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MediaStats:
    # Keyframe requests (PLI) sent to publishers: joins, switches, viewers' losses.
    keyframe_requests: int = 0
    # Viewers moved between the high and the low layer.
    layer_moves: int = 0
    # The program audio's 20 ms mix: how many, and the time they took (seconds).
    mix_ticks: int = 0
    mix_seconds: float = 0.0
    # What closed endpoints had sent and received (open ones are added when scraped).
    closed_packets_sent: int = 0
    closed_bytes_sent: int = 0
    closed_packets_received: int = 0
    closed_bytes_received: int = 0
    # Endpoints opened, by kind, since the start.
    opened_publish: int = 0
    opened_view: int = 0
