"""The application factory: everything the server shares is built here, nothing at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from server import keys
from server.attendance.checkin import CheckinCodes
from server.auth.passwords import PasswordChecks
from server.auth.ratelimit import SlidingWindowLimiter
from server.auth.throttle import LoginThrottle
from server.config import Settings, ensure_jwt_secret
from server.i18n import Catalogues
from server.storage.db import Database
from server.media.feed import ProgramFeed
from server.media.peer import IceConfig
from server.media.stats import MediaStats
from server.recording.jobs import Mp4Jobs
from server.recording.retention import Retention
from server.recording.service import Archive
from server.signaling.registry import LiveRegistry
from server.live.bus import EventBus, InMemoryEventBus
from server.live.nodes import InMemoryNodeRegistry, NodeRegistry
from server.signaling.cascade import RelayWatch
from server.live.quotas import Quotas
from server.storage.attendance import RecordKeeper, rule_from_settings
from server.storage.live import DatabaseLiveStore, FloorGrantStore
from server.storage.presence import PresenceRecorder
from server.storage.quality import QualityStore
from server.storage import units as unit_store
from server.views import live
from server.views.live import relay_ticket
from server.views.metrics import Telemetry, telemetry_ctx
from server.views.middleware import MIDDLEWARES
from server.views.render import create_environment
from server.views.routes import setup_routes

STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"
# Large enough for a members CSV file (2 MiB) in a multipart form.
CLIENT_MAX_SIZE = 3 * 1024 * 1024
# At most 10 wrong check-in codes per user in 10 minutes: guessing one of a
# million codes that change every 45 s is then hopeless.
CHECKIN_FAILURES = 10
CHECKIN_FAILURE_WINDOW = 600

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    """Build the application for ``settings`` (the database must already be migrated)."""
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=CLIENT_MAX_SIZE)
    app[keys.SETTINGS] = settings
    app[keys.JWT_SECRET] = ensure_jwt_secret(settings)
    app[keys.TEMPLATES] = create_environment()
    app[keys.CATALOGUES] = Catalogues()
    auth = settings.auth
    app[keys.LOGIN_THROTTLE] = LoginThrottle(
        free=auth.login_free_attempts, max_delay=auth.login_max_delay_seconds,
        per_account=auth.login_attempts_per_account, per_address=auth.login_attempts_per_ip,
        window=auth.login_window_seconds)
    app[keys.PASSWORD_CHECKS] = PasswordChecks(waiting=auth.password_checks_waiting)
    app[keys.CHECKIN_CODES] = CheckinCodes(app[keys.JWT_SECRET], settings.attendance.checkin_window_seconds)
    app[keys.CHECKIN_LIMITER] = SlidingWindowLimiter(CHECKIN_FAILURES, CHECKIN_FAILURE_WINDOW)
    app[keys.SOCKETS] = set()
    app[keys.MEDIA_STATS] = MediaStats()
    app[keys.TELEMETRY] = Telemetry()
    app[keys.RELAY_TOKENS] = {}
    app[keys.RELAYS_SEEN] = {}
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_live)
    app.cleanup_ctx.append(telemetry_ctx)
    live.setup(app)
    setup_routes(app, str(STATIC_DIR))
    return app


async def _live(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    database = app[keys.DATABASE]
    # One node: the bus and the node registry in this process. With Redis, shared with the relays.
    redis = None
    bus: EventBus
    nodes: NodeRegistry
    if settings.cascade.redis_url:
        from server.cascade import redis as shared

        redis = shared.connect(settings.cascade.redis_url)
        bus = shared.RedisEventBus(redis, node=settings.attendance.node_name)
        nodes = shared.RedisNodeRegistry(redis)
        await bus.start()
    else:
        bus = InMemoryEventBus()
        nodes = InMemoryNodeRegistry()
    app[keys.EVENTS] = bus
    app[keys.NODES] = nodes
    # Subscribers of every session, in order: the stores first (what is on
    # record before anyone is told), then the rooms.
    grant_store = FloorGrantStore(database, write_timeout=settings.attendance.write_timeout_seconds)
    grants = grant_store.subscribe(bus)
    app[keys.FLOOR_GRANTS] = grant_store
    # Attendance: every join, leave and drop is on record before the client is welcomed.
    rule = rule_from_settings(settings.attendance)
    app[keys.CREDIT_RULE] = rule
    records = RecordKeeper(database, rule)
    app[keys.RECORDS] = records
    presence = PresenceRecorder(database, node=settings.attendance.node_name, spool_dir=settings.data_dir,
                                write_timeout=settings.attendance.write_timeout_seconds,
                                queue_limit=settings.attendance.queue_limit,
                                heartbeat_seconds=settings.attendance.heartbeat_seconds, on_late=records.refresh)
    await presence.start()
    app[keys.PRESENCE] = presence
    # The archive records every live session's program feed; the MP4 copies follow one at a time.
    jobs = Mp4Jobs(database, settings.recordings_dir, settings.recordings)
    archive = Archive(database, settings.recordings_dir, node=settings.attendance.node_name,
                      program=lambda session_id: _program(app, session_id), on_finished=jobs.wake)
    try:
        await archive.recover()
    except Exception:
        # Serving goes on; the parts left open stay so and are repaired at the next start.
        log.exception("archive: the recordings a stop left open could not be recovered now")
    await jobs.start()
    retention = Retention(database, settings.recordings_dir, settings.recordings.retention_days)
    retention.start()
    app[keys.ARCHIVE] = archive
    app[keys.MP4_JOBS] = jobs
    # The points' alarms and connection tests (the roll-call board), kept.
    quality = QualityStore(database)
    app[keys.QUALITY] = quality
    subscriptions = [grants, presence.subscribe(bus), records.subscribe(bus), archive.subscribe(bus),
                     quality.subscribe(bus)]
    ice = IceConfig.from_settings(settings.ice)
    limits = settings.limits
    quotas = Quotas(endpoints_per_user=limits.endpoints_per_user, endpoints_per_session=limits.session_endpoints,
                    sockets_per_user=limits.sockets_per_user,
                    # A refused caller may try again once endpoints left unconnected have expired.
                    retry_after=int(ice.connect_timeout + 0.999))
    registry = LiveRegistry(DatabaseLiveStore(database), bus, ice, grace_seconds=settings.live.reconnect_grace_seconds,
                            quotas=quotas, thresholds=settings.quality, stats=app[keys.MEDIA_STATS],
                            prechecks=quality.prechecks)
    app[keys.LIVE] = registry
    async def units_above(unit_id: int) -> list[int]:
        async with database.session() as db:
            return await unit_store.ancestor_ids(db, unit_id)

    watch = RelayWatch(nodes, registry, interval=min(1.0, settings.cascade.heartbeat_seconds),
                       units_above=units_above,
                       ticket=lambda principal, session_id: relay_ticket(app, principal, session_id))
    registry.directions = watch
    subscriptions.append(watch.subscribe(bus))
    watch.start()
    app[keys.RELAY_WATCH] = watch
    yield
    await watch.stop()
    await archive.stop()
    await registry.close()
    await retention.stop()
    await jobs.stop()
    await presence.stop()
    if not await grant_store.drain(5):
        log.warning("floor grants: still waiting for the database at shutdown")
    await grant_store.close()
    if not await quality.drain(3):
        log.warning("quality events: still waiting for the database at shutdown")
    await quality.close()
    try:
        await asyncio.wait_for(records.drain(), 10)
    except (TimeoutError, asyncio.TimeoutError):
        log.warning("attendance: records still being written at shutdown; they are computed again when needed")
    for subscription in subscriptions:
        subscription.cancel()
    await nodes.close()
    if redis is not None:
        await bus.close()  # type: ignore[attr-defined]
        await redis.aclose()


def _program(app: web.Application, session_id: int) -> tuple[ProgramFeed, bool] | None:
    """The session's program feed while its room is open here, and whether it is to be recorded."""
    room = app[keys.LIVE].existing(session_id)
    return (room.media.feed, room.info.record) if room is not None and not room.closed else None


async def _database(app: web.Application) -> AsyncIterator[None]:
    database = Database(app[keys.SETTINGS].effective_database_url)
    app[keys.DATABASE] = database
    yield
    await database.close()
