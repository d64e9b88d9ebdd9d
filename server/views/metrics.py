"""``GET /metrics``: the service in Prometheus' text format (prometheus-client).

Everything is read when scraped, from what the live core already keeps
(rooms, endpoints, the media counters, the sockets' outboxes): nothing is
counted per packet for it. The registry is the application's own (tests
run several applications in one process), with the process, platform and
garbage-collector collectors on it.

Access (``[metrics]``): with ``token`` set, a scrape needs
``Authorization: Bearer <token>`` from anywhere; without it, only the
loopback may scrape (a Prometheus beside the server, or behind an SSH
tunnel). Anyone else gets 403.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import event

from server import keys
from server.errors import Forbidden

# The event loop's lag is sampled this often: a sleep of LAG_INTERVAL that
# takes longer than asked tells how long callbacks waited for the loop.
LAG_INTERVAL = 0.5


class Telemetry:
    """The application's registry and the few measurements that need a hook of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.loop_lag = Histogram(
            "bridgecast_event_loop_lag_seconds", "How late the event loop ran a timer (sampled every 0.5 s)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=self.registry)
        self.db_latency = Histogram(
            "bridgecast_database_statement_seconds", "Database statements, from execute to result",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry)
        self.last_lag = 0.0

    def watch_database(self, engine: Any) -> None:
        """Time every statement of ``engine`` (an AsyncEngine) with SQLAlchemy's cursor events."""
        sync = engine.sync_engine

        @event.listens_for(sync, "before_cursor_execute")
        def _before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                    executemany: bool) -> None:
            conn.info.setdefault("bc_started", []).append(time.perf_counter())

        @event.listens_for(sync, "after_cursor_execute")
        def _after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                   executemany: bool) -> None:
            started = conn.info.get("bc_started")
            if started:
                self.db_latency.observe(time.perf_counter() - started.pop())

        @event.listens_for(sync, "handle_error")
        def _error(context: Any) -> None:
            started = context.connection.info.get("bc_started") if context.connection is not None else None
            if started:
                started.pop()

    async def measure_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            lag = max(0.0, loop.time() - asked - LAG_INTERVAL)
            self.last_lag = lag
            self.loop_lag.observe(lag)


class LiveCollector(Collector):
    """The live core's figures, read at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        registry = self.app.get(keys.LIVE)
        stats = self.app.get(keys.MEDIA_STATS)
        rooms = list(registry.rooms.values()) if registry is not None else []

        live = GaugeMetricFamily("bridgecast_sessions_live", "Sessions live on this server")
        live.add_metric([], sum(1 for room in rooms if room.info.status.value == "live"))
        yield live
        open_rooms = GaugeMetricFamily("bridgecast_rooms_open", "Session rooms open on this server")
        open_rooms.add_metric([], len(rooms))
        yield open_rooms

        endpoints = GaugeMetricFamily("bridgecast_endpoints", "Open media endpoints, by kind", labels=["kind"])
        subscribers = GaugeMetricFamily("bridgecast_subscribers", "Viewers of a session's program",
                                        labels=["session"])
        sockets = GaugeMetricFamily("bridgecast_websockets", "Open live websockets")
        outbox = GaugeMetricFamily("bridgecast_websocket_outbox_messages",
                                   "Messages queued behind the live websockets", labels=["stat"])
        counts = {"publish": 0, "view": 0}
        packets_sent = bytes_sent = packets_received = bytes_received = 0
        queued: list[int] = []
        for room in rooms:
            views = 0
            for state in room.media.endpoints():
                counts[state.kind] = counts.get(state.kind, 0) + 1
                views += state.kind == "view"
            subscribers.add_metric([str(room.info.id)], views)
            totals = room.media.traffic()
            packets_sent += totals[0]
            bytes_sent += totals[1]
            packets_received += totals[2]
            bytes_received += totals[3]
            queued.extend(getattr(member.connection, "queued", 0) for member in room.members)
        for kind, count in sorted(counts.items()):
            endpoints.add_metric([kind], count)
        sockets.add_metric([], len(queued))
        outbox.add_metric(["total"], sum(queued))
        outbox.add_metric(["max"], max(queued, default=0))
        yield endpoints
        yield subscribers
        yield sockets
        yield outbox

        if stats is not None:
            packets_sent += stats.closed_packets_sent
            bytes_sent += stats.closed_bytes_sent
            packets_received += stats.closed_packets_received
            bytes_received += stats.closed_bytes_received
            yield _counter("bridgecast_keyframe_requests", "Keyframe requests (PLI) sent to publishers",
                           stats.keyframe_requests)
            yield _counter("bridgecast_layer_moves", "Viewers moved between the high and the low layer",
                           stats.layer_moves)
            yield _counter("bridgecast_audio_mix_ticks", "Program audio mixes (one per 20 ms per live room)",
                           stats.mix_ticks)
            yield _counter("bridgecast_audio_mix_seconds", "Time spent mixing the program audio",
                           stats.mix_seconds)
            opened = CounterMetricFamily("bridgecast_endpoints_opened", "Media endpoints opened, by kind",
                                         labels=["kind"])
            opened.add_metric(["publish"], stats.opened_publish)
            opened.add_metric(["view"], stats.opened_view)
            yield opened
        yield _counter("bridgecast_packets_sent", "Media packets sent (RTP and RTCP, all endpoints)", packets_sent)
        yield _counter("bridgecast_bytes_sent", "Media bytes sent (all endpoints)", bytes_sent)
        yield _counter("bridgecast_packets_received", "Media packets received (all endpoints)", packets_received)
        yield _counter("bridgecast_bytes_received", "Media bytes received (all endpoints)", bytes_received)

        presence = self.app.get(keys.PRESENCE)
        if presence is not None:
            queue = GaugeMetricFamily("bridgecast_attendance_pending", "Attendance events not yet in the database",
                                      labels=["where"])
            queue.add_metric(["queue"], presence.queued)
            queue.add_metric(["spool"], presence.spooled)
            yield queue
            writing = GaugeMetricFamily("bridgecast_attendance_writing", "1 while attendance reaches the database")
            writing.add_metric([], 1 if presence.healthy else 0)
            yield writing


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _allowed(request: web.Request) -> bool:
    token = request.app[keys.SETTINGS].metrics.token
    if token:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    # The socket's own peer: X-Forwarded-For is never believed here (a proxy in front is not loopback).
    peer = request.transport.get_extra_info("peername") if request.transport else None
    try:
        return bool(peer) and ipaddress.ip_address(peer[0]).is_loopback
    except ValueError:
        return False


async def metrics(request: web.Request) -> web.StreamResponse:
    if not _allowed(request):
        raise Forbidden("metrics are served to the loopback, or with the metrics token", code="metrics_forbidden")
    body = generate_latest(request.app[keys.TELEMETRY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def telemetry_ctx(app: web.Application) -> AsyncIterator[None]:
    """The application's telemetry: its registry, the loop-lag sampler, the database timer."""
    telemetry = app[keys.TELEMETRY]
    telemetry.registry.register(LiveCollector(app))
    database = app.get(keys.DATABASE)
    if database is not None:
        telemetry.watch_database(database.engine)
    task = asyncio.create_task(telemetry.measure_loop(), name="event-loop-lag")
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
